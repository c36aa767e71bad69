"""The ``cpp`` backend of SSD (CPU): csrc/ssd_scan_cpu.cpp as custom ops.

``vmamba::ssd_scan_cpp`` runs the recurrence token by token, one C++ pass per (batch, head) with
the head's state in L1 (on a CPU the chunked form's (Q x Q) decay masks cost more than the
recurrence itself); for headdims that are multiples of 8 it walks blocks of 32 tokens with the
state in registers (the source says how). It reads x, dt, B and C in place through their strides
(only their last dim must be contiguous) and returns y and the final states. Its backward,
``vmamba::ssd_scan_cpp_backward``, walks the adjoint recurrence back from the last token in one
pass per (batch, group), recomputing the forward states from checkpoints (the formulas are in the
source). Being ``torch.library`` operators with fake implementations, they stay whole in
``torch.compile`` graphs and ``torch.export`` programs. The kernels have their own extension,
built on first use like the selective scan's (``common/cpu_extension.py``) with the same flags.
"""
from typing import Optional

import torch
from torch import Tensor

from ..common.cpu_extension import compile_flags, float32_contiguous
from ..common.lazy_extension import LazyExtension
from .reference import gradient_placeholders

_EXTENSION = LazyExtension('vmamba_cpu_ssd_scan', 'ssd_scan_cpu.cpp', headers=['vector_math.h'],
                           extra_cflags=compile_flags(), extra_ldflags=['-fopenmp'])
load_extension = _EXTENSION.load
unavailable_reason = _EXTENSION.unavailable_reason


def float32_rows(t):
    """float32 with the last dim contiguous, other strides kept: what the forward kernel reads
    in place."""
    t = t.float()
    return t if t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous()


@torch.library.custom_op('vmamba::ssd_scan_cpp', mutates_args=())
def ssd_scan_cpp(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                 dt_bias: Optional[Tensor], initial_states: Optional[Tensor], chunk_size: int,
                 dt_softplus: bool) -> tuple[Tensor, Tensor]:
    """``vmamba_kernels.ssd_scan`` in one C++ pass per (batch, head): float32 y (batch, L, heads,
    headdim) and final states (batch, heads, headdim, N). ``chunk_size`` changes nothing here: it
    is an argument for the FLOP rule (``flops.py``), which counts SSD in its chunked form, as the
    official tables do, whichever backend runs."""
    # x, dt, B and C are read through their strides (the mixer's are slices of one projection).
    args = [float32_rows(t) for t in (x, dt, B, C)]
    args[2:2] = [float32_contiguous(A, x)]
    args += [float32_contiguous(t, x) for t in (D, dt_bias, initial_states)]
    y, final_states = load_extension().ssd_scan_forward(*args, dt_softplus)
    return y, final_states


@ssd_scan_cpp.register_fake
def _(x, dt, A, B, C, D, dt_bias, initial_states, chunk_size, dt_softplus):
    batch, _, heads, headdim = x.shape
    return (x.new_empty(x.shape, dtype=torch.float32),
            x.new_empty(batch, heads, headdim, B.shape[-1], dtype=torch.float32))


@torch.library.custom_op('vmamba::ssd_scan_cpp_backward', mutates_args=())
def ssd_scan_cpp_backward(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor], dt_bias: Optional[Tensor],
                          initial_states: Optional[Tensor], grad_y: Tensor,
                          grad_final_states: Optional[Tensor], dt_softplus: bool
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                     Tensor]:
    """(dx, ddt, dA, dB, dC, dD, ddt_bias, dinitial_states) of ``ssd_scan_cpp``: dx, ddt, dB, dC
    in their input's dtype, the rest float32; dD (D's shape), ddt_bias and dinitial_states are
    zeros when their input is absent (an operator cannot return None)."""
    args = [float32_contiguous(t, x) for t in (x, dt, A, B, C, D, dt_bias, initial_states, grad_y,
                                               grad_final_states)]
    dx, ddt, dA, dB, dC, dD, dbias, dinitial = load_extension().ssd_scan_backward(
        *args, dt_softplus)
    if D is None:
        dD = x.new_zeros(0, dtype=torch.float32)
    return (dx.to(x.dtype), ddt.to(dt.dtype), dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias,
            dinitial)


@ssd_scan_cpp_backward.register_fake
def _(x, dt, A, B, C, D, dt_bias, initial_states, grad_y, grad_final_states, dt_softplus):
    return gradient_placeholders(x, dt, A, B, C, D)


def _scan_setup(ctx, inputs, output):
    x, dt, A, B, C, D, dt_bias, initial_states, _, dt_softplus = inputs
    ctx.dt_softplus = dt_softplus
    ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, initial_states)


def _scan_backward(ctx, grad_y, grad_final_states):
    x, dt, A, B, C, D, dt_bias, initial_states = ctx.saved_tensors
    dx, ddt, dA, dB, dC, dD, dbias, dinitial = ssd_scan_cpp_backward(
        x, dt, A, B, C, D, dt_bias, initial_states, grad_y, grad_final_states, ctx.dt_softplus)
    return (dx, ddt, dA, dB, dC, dD if D is not None else None,
            dbias if dt_bias is not None else None,
            dinitial.to(initial_states.dtype) if initial_states is not None else None, None, None)


ssd_scan_cpp.register_autograd(_scan_backward, setup_context=_scan_setup)


def ssd_scan_compiled(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
                      initial_states=None, return_final_states=False, out_dtype=torch.float32):
    """The ``cpp`` backend's entry, called by ``ssd_scan`` with checked inputs (``chunk_size``
    only reaches the FLOP rule: the recurrence has no chunks)."""
    y, final_states = ssd_scan_cpp(x, dt, A, B, C, D, dt_bias, initial_states, chunk_size,
                                   dt_softplus)
    y = y.to(out_dtype)
    return (y, final_states) if return_final_states else y
