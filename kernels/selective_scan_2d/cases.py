"""Example inputs of ``selective_scan_2d`` (see ``common/cases.py``); a shape is
(batch, dim, H, W, N, groups)."""
import torch

from ..common.cases import Examples, register_examples
from ..selective_scan.cases import scan_tensors


def make(shape, dtype=torch.float32, seed=0, **options):
    batch, dim, height, width, state, groups = shape
    return (scan_tensors(batch, dim, height * width, state, groups, dtype=dtype, seed=seed,
                         **options),
            dict(delta_softplus=True, out_dtype=torch.float32, height=height, width=width))


def label(shape):
    batch, dim, height, width, state, groups = shape
    return f'b{batch} d{dim} {height}x{width} N{state} g{groups}'


register_examples(Examples(
    'selective_scan_2d',
    shapes={'smoke': [(1, 4, 3, 5, 2, 2)],
            'check': [(2, 32, 14, 14, 1, 4), (1, 8, 9, 40, 4, 2)]},
    make=make, label=label))
