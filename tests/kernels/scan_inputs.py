"""Scan inputs and tolerances shared by the kernel tests."""
import torch

import vmamba_kernels


def make_inputs(batch, dim, length, state, groups, dtype=torch.float32, seed=0, decay=3.0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    return dict(
        u=rnd(batch, dim, length).to(dtype),
        delta=rnd(batch, dim, length, scale=0.5).to(dtype),
        A=-(torch.rand(dim, state, generator=gen) * decay + 0.05),
        B=rnd(batch, groups, state, length).to(dtype),
        C=rnd(batch, groups, state, length).to(dtype),
        D=rnd(dim),
        delta_bias=rnd(dim, scale=0.5),
    )


def run(inputs, backend, requires_grad=False, **kwargs):
    """``selective_scan`` on fresh leaves of ``inputs``: (output, leaves)."""
    leaves = {k: v.detach().clone().requires_grad_(requires_grad) for k, v in inputs.items()}
    out = vmamba_kernels.selective_scan(leaves['u'], leaves['delta'], leaves['A'], leaves['B'],
                                        leaves['C'], D=leaves['D'], delta_bias=leaves['delta_bias'],
                                        backend=backend, **kwargs)
    return out, leaves


def assert_close_scaled(actual, expected, rtol=1e-4):
    scale = expected.abs().max().clamp(min=1.0)
    assert (actual.float() - expected.float()).abs().max() <= rtol * scale, \
        f'max error {(actual.float() - expected.float()).abs().max():.3g} at scale {scale:.3g}'
