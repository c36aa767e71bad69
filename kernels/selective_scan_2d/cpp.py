"""The ``cpp`` backend of the 2D scan (CPU): csrc/selective_scan_2d_cpu.cpp as a custom op.

``vmamba::selective_scan_2d_cpp`` walks each (batch, channel) grid in one C++ pass, carrying one
row of column states. Its backward is the closed form of ``gradients.py`` with the recurrences
run by the 1D extension's ``vmamba::linear_recurrence_cpp``. The kernel has its own extension,
built on first use like the 1D one (``cpu_extension.py``) with the same flags.
"""
from typing import Optional

import torch
from torch import Tensor

from ..cpu_extension import compile_flags, float32_contiguous
from ..lazy_extension import LazyExtension
from ..selective_scan.cpp import recurrence_rows
from .gradients import selective_scan_2d_gradients

_EXTENSION = LazyExtension('vmamba_cpu_scan_2d', 'selective_scan_2d_cpu.cpp',
                           extra_cflags=compile_flags(), extra_ldflags=['-fopenmp'])
load_extension = _EXTENSION.load
unavailable_reason = _EXTENSION.unavailable_reason


@torch.library.custom_op('vmamba::selective_scan_2d_cpp', mutates_args=())
def selective_scan_2d_cpp(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                          height: int, width: int) -> Tensor:
    """The 2D scan of ``vmamba_kernels.selective_scan_2d`` (B, C as (batch, G, N, L)) on the
    ``height`` x ``width`` grid in one C++ pass per (batch, channel); float32 (batch, dim, L)."""
    args = [float32_contiguous(t, u) for t in (u, delta, A, B, C, D, delta_bias)]
    return load_extension().selective_scan_2d_forward(*args, delta_softplus, height, width)


@selective_scan_2d_cpp.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, height, width):
    return u.new_empty(u.shape, dtype=torch.float32)


def _scan_setup(ctx, inputs, output):
    u, delta, A, B, C, D, delta_bias, delta_softplus, height, width = inputs
    ctx.delta_softplus, ctx.height, ctx.width = delta_softplus, height, width
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)


def _scan_backward(ctx, grad_y):
    u, delta, A, B, C, D, delta_bias = ctx.saved_tensors
    grads = selective_scan_2d_gradients(grad_y, u, delta, A, B, C, D, delta_bias,
                                        ctx.delta_softplus, ctx.height, ctx.width,
                                        recurrence_rows)
    return (*grads, None, None, None)  # delta_softplus, height, width


selective_scan_2d_cpp.register_autograd(_scan_backward, setup_context=_scan_setup)


def selective_scan_2d_compiled(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                               height=None, width=None, out_dtype=torch.float32):
    """The ``cpp`` backend's entry, called by ``selective_scan_2d`` with checked inputs."""
    return selective_scan_2d_cpp(u, delta, A, B, C, D, delta_bias, delta_softplus, height,
                                 width).to(out_dtype)
