"""The ``cpp`` depthwise_conv_silu: csrc/depthwise_conv_cpu.cpp as a custom op (CPU).

One pass over the channels-last map computes the conv, its bias and the SiLU. Inference only in
practice (under autograd the entry takes the tensor ops, whose oneDNN backward is the fast one),
but a complete operator: its backward differentiates the reference on the saved inputs.
"""
from typing import Optional

import torch
from torch import Tensor

from ..common.cpu_extension import compile_flags, float32_contiguous
from ..common.lazy_extension import LazyExtension
from ..common.scan_common import needs_grad
from .reference import depthwise_conv_silu_reference

_EXTENSION = LazyExtension('vmamba_cpu_depthwise_conv', 'depthwise_conv_cpu.cpp',
                           headers=['vector_math.h'], extra_cflags=compile_flags(),
                           extra_ldflags=['-fopenmp'])
load_extension = _EXTENSION.load
unavailable_reason = _EXTENSION.unavailable_reason


@torch.library.custom_op('vmamba::depthwise_conv_silu_cpp', mutates_args=())
def depthwise_conv_silu_cpp(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """SiLU(depthwise conv) of a (B, H, W, C) map, 'same' padding: (B, H, W, C) float32."""
    return load_extension().depthwise_conv_silu_forward(
        *(float32_contiguous(t, x) for t in (x, weight, bias)))


@depthwise_conv_silu_cpp.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape, dtype=torch.float32)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    leaves = [t.detach().requires_grad_(needed) if t is not None else None
              for t, needed in zip(ctx.saved_tensors, ctx.needs_input_grad)]
    wanted = [t for t in leaves if t is not None and t.requires_grad]
    with torch.enable_grad():
        x, weight, bias = leaves
        y = depthwise_conv_silu_reference(x.permute(0, 3, 1, 2), weight, bias)
        found = iter(torch.autograd.grad(y.permute(0, 2, 3, 1), wanted, grad))
    return tuple(next(found) if t is not None and t.requires_grad else None for t in leaves)


depthwise_conv_silu_cpp.register_autograd(_backward, setup_context=_setup)


def depthwise_conv_silu_compiled(x, weight, bias):
    """The ``cpp`` backend's depthwise_conv_silu: the kernel without autograd, else the tensor
    ops. The result is channels-last in memory, as oneDNN's conv of a channels-last map is."""
    if needs_grad(x, weight, bias):
        return depthwise_conv_silu_reference(x, weight, bias)
    y = depthwise_conv_silu_cpp(x.permute(0, 2, 3, 1).contiguous(), weight, bias)
    return y.permute(0, 3, 1, 2).to(x.dtype)
