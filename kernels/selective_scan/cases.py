"""Example inputs of ``selective_scan`` (see ``common/cases.py``); a shape is
(batch, dim, L, N, groups)."""
import torch

from ..common.cases import Examples, register_examples


def scan_tensors(batch, dim, length, state, groups, dtype=torch.float32, seed=0, decay=1.0,
                 min_decay=0.1):
    """u, delta, A, B, C, D, delta_bias by name; A in [-(decay + min_decay), -min_decay]."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    return dict(
        u=rnd(batch, dim, length).to(dtype),
        delta=rnd(batch, dim, length, scale=0.5).to(dtype),
        A=-(torch.rand(dim, state, generator=gen) * decay + min_decay),
        B=rnd(batch, groups, state, length).to(dtype),
        C=rnd(batch, groups, state, length).to(dtype),
        D=rnd(dim),
        delta_bias=rnd(dim, scale=0.5),
    )


def make(shape, dtype=torch.float32, seed=0, **options):
    return (scan_tensors(*shape, dtype=dtype, seed=seed, **options),
            dict(delta_softplus=True, out_dtype=torch.float32))


def label(shape):
    batch, dim, length, state, groups = shape
    return f'b{batch} d{dim} L{length} N{state} g{groups}'


register_examples(Examples(
    'selective_scan',
    # VMamba-T's N = 1 with 4 groups, N = 16, a long sequence.
    shapes={'smoke': [(1, 4, 20, 2, 2)],
            'check': [(2, 64, 1000, 1, 4), (1, 16, 77, 16, 2), (2, 12, 300, 4, 3)]},
    make=make, label=label))
