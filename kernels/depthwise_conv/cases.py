"""Example inputs of ``depthwise_conv_silu`` (see ``common/cases.py``: it has no GPU kernel, so
no 'smoke' or 'check' sizes); a shape is (batch, channels, H, W, kernel size)."""
import torch

from ..common.cases import Examples, register_examples


def make(shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch, channels, height, width, kernel = shape
    return (dict(x=torch.randn(batch, channels, height, width, generator=gen).to(dtype),
                 weight=torch.randn(channels, 1, kernel, kernel, generator=gen),
                 bias=torch.randn(channels, generator=gen)), {})


def label(shape):
    batch, channels, height, width, kernel = shape
    return f'b{batch} c{channels} {height}x{width} k{kernel}'


register_examples(Examples('depthwise_conv_silu',
                           shapes={'small': [(2, 8, 5, 7, 3), (1, 16, 9, 9, 5)]},
                           make=make, label=label))
