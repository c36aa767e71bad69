"""Example inputs of ``cross_scan`` and ``cross_merge`` (see ``common/cases.py``); a shape is
(batch, channels, H, W)."""
import torch

from ..common.cases import Examples, register_examples
from ..common.routes import NUM_ROUTES

MAPS = {'smoke': [(1, 2, 3, 5)], 'check': [(2, 40, 9, 13), (2, 16, 7, 7)]}


def label(shape):
    batch, channels, height, width = shape
    return f'b{batch} c{channels} {height}x{width}'


def make_scan(shape, dtype=torch.float32, seed=0, order='cross'):
    gen = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(*shape, generator=gen).to(dtype)), dict(order=order)


def make_merge(shape, dtype=torch.float32, seed=0, order='cross'):
    gen = torch.Generator().manual_seed(seed)
    batch, channels, height, width = shape
    routes = torch.randn(batch, NUM_ROUTES, channels, height * width, generator=gen).to(dtype)
    return dict(routes=routes), dict(height=height, width=width, order=order)


register_examples(Examples('cross_scan', shapes=MAPS, make=make_scan, label=label))
register_examples(Examples('cross_merge', shapes=MAPS, make=make_merge, label=label))
