"""Example inputs of ``ssd_scan`` (see ``common/cases.py``); a shape is
(batch, L, heads, headdim, N, groups, chunk_size)."""
import torch

from ..common.cases import Examples, register_examples


def make(shape, dtype=torch.float32, seed=0, initial_states=True):
    batch, length, heads, headdim, state, groups, chunk_size = shape
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0):
        return torch.randn(*size, generator=gen) * scale

    tensors = dict(
        x=randn(batch, length, heads, headdim).to(dtype),
        dt=randn(batch, length, heads, scale=0.5).to(dtype),
        A=-torch.rand(heads, generator=gen) * 2 - 0.1,
        B=randn(batch, length, groups, state, scale=0.5).to(dtype),
        C=randn(batch, length, groups, state, scale=0.5).to(dtype))
    kwargs = dict(chunk_size=chunk_size, D=randn(heads), dt_bias=randn(heads, scale=0.5),
                  dt_softplus=True, return_final_states=True, out_dtype=torch.float32)
    if initial_states:
        kwargs['initial_states'] = randn(batch, heads, headdim, state, scale=0.5)
    return tensors, kwargs


def label(shape):
    batch, length, heads, headdim, state, groups, chunk_size = shape
    return f'b{batch} L{length} h{heads} p{headdim} N{state} g{groups} Q{chunk_size}'


# 'small': the tests' size (the GPU backend check compares one output tensor; SSD returns two).
register_examples(Examples(
    'ssd_scan',
    shapes={'small': [(1, 13, 4, 3, 5, 2, 4)]},
    make=make, label=label))
