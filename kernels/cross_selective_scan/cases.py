"""Example inputs of ``cross_selective_scan`` (see ``common/cases.py``); a shape is
(batch, channels, H, W, rank, N)."""
import torch

from ..common.cases import Examples, register_examples
from ..common.routes import NUM_ROUTES

CORES = {'smoke': [(1, 2, 3, 5, 1, 1)], 'check': [(2, 32, 9, 13, 2, 1), (1, 16, 14, 14, 4, 4)]}


def core_tensors(batch, channels, height, width, rank, state, dtype=torch.float32, seed=0):
    """x, x_proj_weight, dt_projs_weight, A, D, delta_bias by name; x in ``dtype``."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*size, scale=1.0):
        return torch.randn(*size, generator=gen) * scale

    routes = NUM_ROUTES
    return dict(x=rnd(batch, channels, height, width).to(dtype),
                x_proj_weight=rnd(routes, rank + 2 * state, channels, scale=channels**-0.5),
                dt_projs_weight=rnd(routes, channels, rank, scale=rank**-0.5),
                A=-(torch.rand(routes * channels, state, generator=gen) + 0.1),
                D=rnd(routes * channels), delta_bias=rnd(routes * channels, scale=0.5))


def make(shape, dtype=torch.float32, seed=0, order='cross'):
    return core_tensors(*shape, dtype=dtype, seed=seed), dict(order=order)


def label(shape):
    batch, channels, height, width, rank, state = shape
    return f'b{batch} c{channels} {height}x{width} R{rank} N{state}'


register_examples(Examples('cross_selective_scan', shapes=CORES, make=make, label=label))
