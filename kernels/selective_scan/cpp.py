"""The ``cpp`` backend (CPU): the compiled kernels of csrc/selective_scan_cpu.cpp as custom ops.

``vmamba::selective_scan_cpp`` runs the whole scan of a row in one C++ pass; its backward,
``vmamba::selective_scan_cpp_backward``, is the closed form of the scan's gradients
(tests/kernels/oracles.py) in one C++ pass per (batch, group), recomputing the forward. (The
extension's bare recurrence, ``linear_recurrence``, is an operator of the tests' oracles only.)
Being ``torch.library`` operators with fake implementations, they stay whole in
``torch.compile`` graphs and ``torch.export`` programs.
"""
from typing import Optional

import torch
from torch import Tensor

from ..common.cpu_extension import float32_contiguous, load_extension
from ..common.scan_operators import backward_fake


@torch.library.custom_op('vmamba::selective_scan_cpp', mutates_args=())
def selective_scan_cpp(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Optional[Tensor], delta_bias: Optional[Tensor],
                       delta_softplus: bool) -> Tensor:
    """The selective scan of ``vmamba_kernels.selective_scan`` (B, C as (batch, G, N, L)) in one
    C++ pass per row; float32 (batch, dim, L) out."""
    args = [float32_contiguous(t, u) for t in (u, delta, A, B, C, D, delta_bias)]
    return load_extension().selective_scan_forward(*args, delta_softplus)


@selective_scan_cpp.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    return u.new_empty(u.shape, dtype=torch.float32)


def _scan_setup(ctx, inputs, output):
    u, delta, A, B, C, D, delta_bias, delta_softplus = inputs
    ctx.delta_softplus = delta_softplus
    ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)


@torch.library.custom_op('vmamba::selective_scan_cpp_backward', mutates_args=())
def selective_scan_cpp_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                D: Optional[Tensor], delta_bias: Optional[Tensor], grad_y: Tensor,
                                delta_softplus: bool) -> tuple[Tensor, Tensor, Tensor, Tensor,
                                                               Tensor, Tensor, Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias) of ``selective_scan_cpp`` for ``grad_y``, the
    closed form (tests/kernels/oracles.py) in one C++ pass per (batch, group): du, ddelta, dB, dC in
    their input's dtype, the rest float32; dD and ddelta_bias are zeros when D or delta_bias is
    absent (an operator cannot return None)."""
    args = [float32_contiguous(t, u) for t in (u, delta, A, B, C, D, delta_bias, grad_y)]
    du, ddelta, dA, dB, dC, dD, dbias = load_extension().selective_scan_backward(
        *args, delta_softplus)
    return du.to(u.dtype), ddelta.to(delta.dtype), dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias


@selective_scan_cpp_backward.register_fake
def _(u, delta, A, B, C, D, delta_bias, grad_y, delta_softplus):
    return backward_fake(u, delta, A, B, C)


def _scan_backward(ctx, grad_y):
    u, delta, A, B, C, D, delta_bias = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dbias = selective_scan_cpp_backward(
        u, delta, A, B, C, D, delta_bias, grad_y, ctx.delta_softplus)
    return (du, ddelta, dA, dB, dC, dD if D is not None else None,
            dbias if delta_bias is not None else None, None)


selective_scan_cpp.register_autograd(_scan_backward, setup_context=_scan_setup)


def selective_scan_compiled(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                            out_dtype=torch.float32):
    """The ``cpp`` backend's entry, called by ``selective_scan`` with checked inputs."""
    return selective_scan_cpp(u, delta, A, B, C, D, delta_bias, delta_softplus).to(out_dtype)
