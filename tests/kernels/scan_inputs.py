"""Scan inputs and tolerances shared by the kernel tests; the public operations' inputs are their
example inputs (each folder's ``cases.py``), the kernel operators' are made here."""
import torch

import vmamba_kernels
from vmamba_kernels.selective_scan.cases import scan_tensors


def make_inputs(batch, dim, length, state, groups, dtype=torch.float32, seed=0, decay=3.0,
                min_decay=0.05):
    """The selective scan's inputs by name (its example inputs, ``selective_scan/cases.py``), with
    stronger decays by default: A in [-(decay + min_decay), -min_decay]."""
    return scan_tensors(batch, dim, length, state, groups, dtype=dtype, seed=seed, decay=decay,
                        min_decay=min_decay)


def run(inputs, backend, requires_grad=False, **kwargs):
    """``selective_scan`` on fresh leaves of ``inputs``: (output, leaves)."""
    leaves = {k: v.detach().clone().requires_grad_(requires_grad) for k, v in inputs.items()}
    out = vmamba_kernels.selective_scan(leaves['u'], leaves['delta'], leaves['A'], leaves['B'],
                                        leaves['C'], D=leaves['D'], delta_bias=leaves['delta_bias'],
                                        backend=backend, **kwargs)
    return out, leaves


def input_list(batch, dim, length, state, groups, dtype=torch.float32, seed=0, device='cpu'):
    """[u, delta, A, B, C, D, delta_bias] with mild decays (A in [-1.1, -0.1])."""
    inputs = make_inputs(batch, dim, length, state, groups, dtype, seed, decay=1.0, min_decay=0.1)
    return [t.to(device) for t in inputs.values()]


def fused_inputs(channels, height, width, rank, state, seed=0, batch=2):
    """(x, dt_low, dt_weight, A, B, C, D, delta_bias) of a fused cross_selective_scan operator:
    the per-route projections in pixel order."""
    gen = torch.Generator().manual_seed(seed)
    length, routes = height * width, vmamba_kernels.NUM_ROUTES
    return [torch.randn(batch, channels, height, width, generator=gen),
            torch.randn(batch, routes, rank, length, generator=gen),
            torch.randn(routes, channels, rank, generator=gen) * 0.5,
            -torch.rand(routes * channels, state, generator=gen) - 0.1,
            torch.randn(batch, routes, state, length, generator=gen),
            torch.randn(batch, routes, state, length, generator=gen),
            torch.randn(routes * channels, generator=gen),
            torch.randn(routes * channels, generator=gen) * 0.5]


def pixel_major_inputs(channels, height, width, rank, state, seed=0, batch=2):
    """(x, projected, dt_weight, A, D, delta_bias) of the Triton cross_selective_scan operator:
    the (B, H, W, C) map and each pixel's route projections (B, L, routes, R + 2N)."""
    gen = torch.Generator().manual_seed(seed)
    length, routes = height * width, vmamba_kernels.NUM_ROUTES
    return [torch.randn(batch, height, width, channels, generator=gen),
            torch.randn(batch, length, routes, rank + 2 * state, generator=gen),
            torch.randn(routes, channels, rank, generator=gen) * 0.5,
            -torch.rand(routes * channels, state, generator=gen) - 0.1,
            torch.randn(routes * channels, generator=gen),
            torch.randn(routes * channels, generator=gen) * 0.5]


def assert_close_scaled(actual, expected, rtol=1e-4):
    """Max error within rtol of the expected values' scale (at least 1); an absent expected
    gradient allows an absent or all-zero one."""
    if expected is None:
        assert actual is None or not actual.abs().any()
        return
    scale = expected.abs().max().clamp(min=1.0)
    error = (actual.float().cpu() - expected.float().cpu()).abs().max()
    assert error <= rtol * scale, f'max error {error:.3g} at scale {scale:.3g}'
