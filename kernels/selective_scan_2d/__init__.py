"""The 2D selective scan of 2DMamba: its contract, its input check and its backends.

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
from ..common import triton_common
from ..common.scan_common import check_grid, check_scan_inputs, with_group_dim
from ..dispatch import register, register_input_check, run
from . import cpp, flops, reference, triton  # noqa: F401  (flops: FLOP rules)
from . import torch as torch_backend
from .flops import selective_scan_2d_macs  # noqa: F401  (public)

__all__ = ['selective_scan_2d']

OPERATION = 'selective_scan_2d'
register(OPERATION, 'reference', reference.selective_scan_2d_reference, devices=('cpu', 'cuda'),
         description='two sequential passes, one column then one row at a time')
register(OPERATION, 'torch', torch_backend.selective_scan_2d_vectorised, devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.selective_scan_2d_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpp.unavailable_reason, description='C++ kernel')
register(OPERATION, 'triton', triton.selective_scan_2d_triton,
         devices=triton_common.triton_devices(), priority=2, auto_devices=('cuda', ),
         unavailable_reason=triton_common.unavailable_reason, description='Triton kernel, tiled')


def check_inputs(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, height=None,
                 width=None, out_dtype=None):
    """The contract above, as every backend receives it (B, C as (batch, G, N, L))."""
    check_scan_inputs(OPERATION, u, delta, A, B, C, D, delta_bias)
    check_grid(OPERATION, u.shape[-1], height, width)


register_input_check(OPERATION, check_inputs)


def selective_scan_2d(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                      height=None, width=None, out_dtype=None, backend=None):
    """Run the 2D selective scan on the ``height`` x ``width`` grid; see the module docstring.

    ``backend`` names a registered backend ('reference', 'torch', 'cpp', 'triton') or None for
    the automatic choice (see ``vmamba_kernels.dispatch``).
    """
    return run(OPERATION, u.device.type, backend, u, delta, A, with_group_dim(B),
               with_group_dim(C), D=D, delta_bias=delta_bias, delta_softplus=delta_softplus,
               height=height, width=width, out_dtype=u.dtype if out_dtype is None else out_dtype)
