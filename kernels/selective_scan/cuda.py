"""The ``cuda`` backend: the CUDA C++ selective scan (csrc/selective_scan_cuda.cu) as custom ops.

``vmamba::selective_scan_cuda`` returns y and the checkpointed states, from which
``vmamba::selective_scan_cuda_backward`` recomputes each stretch while it walks back; the
forward's registered autograd calls the backward. The extension is built on the first real call
only: the fake implementations need neither nvcc nor a GPU, so graphs with these operators trace
on any machine.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.cuda_extension import load_extension
from ..common.scan_operators import backward_fake, register_saved_state_autograd

# The kernel stores the state every kCheckpoint tokens (csrc/selective_scan_cuda.cu); the fake
# implementation sizes the checkpoint tensor with it (tests/kernels/test_cuda_build.py checks
# that the two agree).
CHECKPOINT_INTERVAL = 16


def _kernel_inputs(u, delta, A, B, C, D, delta_bias):
    """What the kernel reads: u, delta, B, C in u's dtype, the rest float32, all contiguous."""
    same = [t.to(u.dtype).contiguous() for t in (u, delta, B, C)]
    rest = [t.float().contiguous() if t is not None else None for t in (A, D, delta_bias)]
    return same[0], same[1], rest[0], same[2], same[3], rest[1], rest[2]


@torch.library.custom_op('vmamba::selective_scan_cuda', mutates_args=(), device_types='cuda')
def selective_scan_cuda_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                D: Optional[Tensor], delta_bias: Optional[Tensor],
                                delta_softplus: bool) -> Tuple[Tensor, Tensor]:
    """The selective scan (B, C as (batch, G, N, L)): float32 y (batch, dim, L) and the states
    every CHECKPOINT_INTERVAL tokens (batch, dim, N, checkpoints)."""
    y, checkpoints = load_extension().forward(*_kernel_inputs(u, delta, A, B, C, D, delta_bias),
                                              delta_softplus)
    return y, checkpoints


@selective_scan_cuda_forward.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    batch, dim, length = u.shape
    checkpoints = torch.sym_max(1, (length + CHECKPOINT_INTERVAL - 1) // CHECKPOINT_INTERVAL)
    return (u.new_empty(batch, dim, length, dtype=torch.float32),
            u.new_empty(batch, dim, A.shape[1], checkpoints, dtype=torch.float32))


@torch.library.custom_op('vmamba::selective_scan_cuda_backward', mutates_args=(),
                         device_types='cuda')
def selective_scan_cuda_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                 D: Optional[Tensor], delta_bias: Optional[Tensor],
                                 checkpoints: Tensor, grad_y: Tensor, delta_softplus: bool
                                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                            Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias); du, ddelta, dB, dC in their input's dtype, the
    rest float32 (dD and ddelta_bias are computed whether or not D and the bias exist)."""
    du, ddelta, dA, dB, dC, dD, dbias = load_extension().backward(
        *_kernel_inputs(u, delta, A, B, C, D, delta_bias), grad_y.float().contiguous(),
        checkpoints.contiguous(), delta_softplus)
    return (du.to(u.dtype), ddelta.to(delta.dtype), dA, dB.to(B.dtype), dC.to(C.dtype), dD,
            dbias)


@selective_scan_cuda_backward.register_fake
def _(u, delta, A, B, C, D, delta_bias, checkpoints, grad_y, delta_softplus):
    return backward_fake(u, delta, A, B, C)


register_saved_state_autograd(selective_scan_cuda_forward, selective_scan_cuda_backward)


def selective_scan_cuda(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                        out_dtype=torch.float32):
    """The ``cuda`` backend's entry, called by ``selective_scan`` with checked inputs."""
    y, _ = selective_scan_cuda_forward(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))
    return y.to(out_dtype)
