"""Example inputs of ``v2m_scan`` (see ``common/cases.py``); a shape is
(batch, channels, H, W, rank, N, stage)."""
import torch

from ..common.cases import Examples, register_examples
from ..common.lines import NUM_ORIENTATIONS

SHAPES = {'smoke': [(1, 2, 3, 5, 1, 1, 'row'), (1, 2, 3, 5, 1, 1, 'column')],
          'check': [(2, 32, 9, 13, 2, 1, 'row'), (2, 16, 14, 7, 4, 4, 'column'),
                    (1, 20, 5, 6, 3, 2, 'column')]}


def stage_tensors(batch, channels, height, width, rank, state, stage, dtype=torch.float32,
                  seed=0):
    """x, x_proj_weight, dt_projs_weight, A, D, delta_bias by name; x in ``dtype``."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*size, scale=1.0):
        return torch.randn(*size, generator=gen) * scale

    routes = NUM_ORIENTATIONS
    per_orientation = (routes, ) if stage == 'column' else ()
    return dict(x=rnd(batch, height, width, *per_orientation, channels).to(dtype),
                x_proj_weight=rnd(routes, rank + state, channels, scale=channels**-0.5),
                dt_projs_weight=rnd(routes, channels, rank, scale=rank**-0.5),
                A=-(torch.rand(routes * channels, state, generator=gen) + 0.1),
                D=rnd(routes * channels), delta_bias=rnd(routes * channels, scale=0.5))


def make(shape, dtype=torch.float32, seed=0):
    return stage_tensors(*shape, dtype=dtype, seed=seed), dict(stage=shape[-1])


def label(shape):
    batch, channels, height, width, rank, state, stage = shape
    return f'{stage} b{batch} c{channels} {height}x{width} R{rank} N{state}'


register_examples(Examples('v2m_scan', shapes=SHAPES, make=make, label=label))
