"""Example inputs of ``v2m_scan`` (see ``common/cases.py``); a shape is
(stage, batch, channels, H, W, rank, N)."""
import torch

from ..common.cases import Examples, register_examples
from ..common.lines import NUM_ORIENTATIONS

SHAPES = {'smoke': [('row', 1, 2, 3, 5, 1, 1), ('column', 1, 2, 3, 5, 1, 1)],
          'check': [('row', 2, 32, 9, 13, 2, 1), ('column', 2, 16, 14, 7, 4, 4),
                    ('column', 1, 20, 5, 6, 3, 2)]}


def stage_tensors(stage, batch, channels, height, width, rank, state, dtype=torch.float32,
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
    stage, *sizes = shape
    return stage_tensors(stage, *sizes, dtype=dtype, seed=seed), dict(stage=stage)


def label(shape):
    stage, batch, channels, height, width, rank, state = shape
    return f'{stage} b{batch} c{channels} {height}x{width} R{rank} N{state}'


register_examples(Examples('v2m_scan', shapes=SHAPES, make=make, label=label))
