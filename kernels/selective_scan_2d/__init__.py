"""The 2D selective scan of 2DMamba: entry point, input checks, dispatch.

Contract: ``selective_scan``'s shapes (u, delta (batch, dim, L); A (dim, N) float32; B, C
(batch, G, N, L) or (batch, N, L); D, delta_bias (dim,) float32) plus the grid, ``L = height *
width`` in row-major order (token ``i * width + j`` is pixel (i, j)). Per channel and state, with
delta <- softplus(delta + delta_bias) when asked, a = exp(delta A) and x = delta B u::

    row pass     g[i, j] = a[i, j] g[i, j-1] + x[i, j]        (g = 0 left of column 0)
    column pass  h[i, j] = a[i, j] h[i-1, j] + g[i, j]        (the same a; h = 0 above row 0)
    y[i, j] = <C[i, j], h[i, j]> + D u[i, j]

so h[i, j] sums every source (i', j') above-left of (i, j) along one L-shaped path: its own row to
column j, then down the column. Computed in float32; the result has ``out_dtype`` (default: the
dtype of ``u``).
"""
import os

import torch

from .. import triton_common
from ..dispatch import register, run
from ..selective_scan import check_inputs
from . import cpp, flops, reference, triton, vectorised  # noqa: F401  (flops: FLOP rules)
from .flops import selective_scan_2d_macs  # noqa: F401  (public)

OPERATION = 'selective_scan_2d'
register(OPERATION, 'reference', reference.selective_scan_2d_reference, devices=('cpu', 'cuda'),
         description='two sequential passes, one column then one row at a time')
register(OPERATION, 'torch', vectorised.selective_scan_2d_vectorised, devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.selective_scan_2d_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpp.unavailable_reason, description='C++ kernel')
register(OPERATION, 'triton', triton.selective_scan_2d_triton,
         devices=('cuda', 'cpu') if os.environ.get('TRITON_INTERPRET') == '1' else ('cuda', ),
         priority=2, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel, tiled')


def check_grid(length, height, width):
    for name, value in (('height', height), ('width', width)):
        if value is None:
            raise ValueError(f'selective_scan_2d needs the grid: pass height= and width= with '
                             f'height * width = L = {length} (the tokens in row-major order).')
        if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
            raise TypeError(f'selective_scan_2d: {name} must be an int, got {value!r}.')
        if value < 1:
            raise ValueError(f'selective_scan_2d: {name}={value} must be at least 1.')
    if height * width != length:
        raise ValueError(f'selective_scan_2d: height * width = {height} * {width} = '
                         f'{height * width} does not match the sequence length L = {length} of u; '
                         f'the tokens must be the H x W grid in row-major order.')


def selective_scan_2d(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                      height=None, width=None, out_dtype=None, backend=None):
    """Run the 2D selective scan on the ``height`` x ``width`` grid; see the module docstring.

    ``backend`` names a registered backend ('reference', 'torch', 'cpp', 'triton') or None for
    the automatic choice (see ``vmamba_kernels.dispatch``).
    """
    B, C = check_inputs(u, delta, A, B, C, D, delta_bias, operation=OPERATION)
    check_grid(u.shape[-1], height, width)
    return run(OPERATION, u.device.type, backend, u, delta, A, B, C, D=D, delta_bias=delta_bias,
               delta_softplus=delta_softplus, height=height, width=width,
               out_dtype=u.dtype if out_dtype is None else out_dtype)

