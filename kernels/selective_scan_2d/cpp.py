"""The ``cpp`` backend of the 2D scan (CPU): csrc/selective_scan_2d_cpu.cpp as a custom op.

``vmamba::selective_scan_2d_cpp`` walks each (batch, channel) grid in one C++ pass, carrying one
row of column states. Its backward, ``vmamba::selective_scan_2d_cpp_backward``, is the closed form
(tests/kernels/oracles.py) in one C++ pass per grid: it recomputes the forward's row and column
states, then walks the grid from the last token with the adjoint carries; dB and dC are summed
over a group's channels in a fixed order. Being an operator with a fake implementation, the backward
traces under ``torch.compile``. The kernels have their own extension, built on first use like the
1D one (``common/cpu_extension.py``) with the same flags.
"""
from typing import Optional

import torch
from torch import Tensor

from ..common.cpu_extension import compile_flags, float32_contiguous
from ..common.lazy_extension import LazyExtension
from ..common.scan_operators import backward_fake

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


@torch.library.custom_op('vmamba::selective_scan_2d_cpp_backward', mutates_args=())
def selective_scan_2d_cpp_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                   D: Optional[Tensor], delta_bias: Optional[Tensor],
                                   grad_y: Tensor, delta_softplus: bool, height: int,
                                   width: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor,
                                                        Tensor, Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias) of ``selective_scan_2d_cpp`` for ``grad_y``:
    du, ddelta, dB, dC in their input's dtype, the rest float32; dD and ddelta_bias are zeros
    when D or delta_bias is absent (an operator cannot return None)."""
    args = [float32_contiguous(t, u) for t in (u, delta, A, B, C, D, delta_bias, grad_y)]
    du, ddelta, dA, dB, dC, dD, dbias = load_extension().selective_scan_2d_backward(
        *args, delta_softplus, height, width)
    return du.to(u.dtype), ddelta.to(delta.dtype), dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias


@selective_scan_2d_cpp_backward.register_fake
def _(u, delta, A, B, C, D, delta_bias, grad_y, delta_softplus, height, width):
    return backward_fake(u, delta, A, B, C)


def _scan_setup(ctx, inputs, output):
    u, delta, A, B, C, D, delta_bias, delta_softplus, height, width = inputs
    ctx.delta_softplus, ctx.height, ctx.width = delta_softplus, height, width
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)


def _scan_backward(ctx, grad_y):
    u, delta, A, B, C, D, delta_bias = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dbias = selective_scan_2d_cpp_backward(
        u, delta, A, B, C, D, delta_bias, grad_y, ctx.delta_softplus, ctx.height, ctx.width)
    return (du, ddelta, dA, dB, dC, dD if D is not None else None,
            dbias if delta_bias is not None else None, None, None, None)


selective_scan_2d_cpp.register_autograd(_scan_backward, setup_context=_scan_setup)


def selective_scan_2d_compiled(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                               height=None, width=None, out_dtype=torch.float32):
    """The ``cpp`` backend's entry, called by ``selective_scan_2d`` with checked inputs."""
    return selective_scan_2d_cpp(u, delta, A, B, C, D, delta_bias, delta_softplus, height,
                                 width).to(out_dtype)
