"""Example inputs of ``add_layer_norm`` (see ``common/cases.py``: no 'smoke' or 'check' sizes,
its output is a pair); a shape is (batch, channels, H, W), a channel-first map."""
import torch

from ..common.cases import Examples, register_examples


def make(shape, dtype=torch.float32, seed=0, channel_first=True):
    gen = torch.Generator().manual_seed(seed)
    batch, channels, height, width = shape
    x, residual = (torch.randn(batch, channels, height, width, generator=gen) for _ in range(2))
    if not channel_first:
        x, residual = x.permute(0, 2, 3, 1), residual.permute(0, 2, 3, 1)
    return (dict(x=x.to(dtype), residual=residual.to(dtype),
                 weight=torch.randn(channels, generator=gen),
                 bias=torch.randn(channels, generator=gen)),
            dict(eps=1e-5, channel_first=channel_first))


def label(shape):
    batch, channels, height, width = shape
    return f'b{batch} c{channels} {height}x{width}'


register_examples(Examples('add_layer_norm', shapes={'small': [(2, 8, 5, 7), (1, 96, 4, 4)]},
                           make=make, label=label))
