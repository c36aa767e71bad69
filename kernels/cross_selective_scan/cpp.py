"""The ``cpp`` cross_selective_scan: SS2D's routes walked in place by one C++ pass.

Inference only in practice (``cross_selective_scan`` takes the composite under autograd, which
keeps no recomputation), but a complete operator: its backward differentiates
``fused_scan_reference`` on the ``cpp`` selective scan.
"""
from typing import Optional

import torch
from torch import Tensor

from ..cpu_extension import float32_contiguous, load_extension
from ..routes import route_table
from ..scan_common import needs_grad
from ..selective_scan.cpp import selective_scan_cpp
from .composite import composite, fused_scan_reference, project


@torch.library.custom_op('vmamba::cross_selective_scan_cpp', mutates_args=())
def cross_selective_scan_cpp(x: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor,
                             B: Tensor, C: Tensor, D: Optional[Tensor],
                             delta_bias: Optional[Tensor], pixels: Tensor) -> Tensor:
    """``fused_scan_reference`` in one C++ pass: (B, C, L) float32, delta with softplus."""
    args = [float32_contiguous(t, x) for t in (x, dt_low, dt_weight, A, B, C, D, delta_bias)]
    return load_extension().cross_selective_scan_forward(*args, True, pixels.contiguous())


@cross_selective_scan_cpp.register_fake
def _(x, dt_low, dt_weight, A, B, C, D, delta_bias, pixels):
    return x.new_empty(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], dtype=torch.float32)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    inputs = ctx.saved_tensors
    wanted = [i for i, t in enumerate(inputs[:8]) if t is not None and ctx.needs_input_grad[i]]
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(i in wanted) if t is not None else None
                  for i, t in enumerate(inputs[:8])]
        y = fused_scan_reference(*leaves, inputs[8], selective_scan_cpp)
        found = torch.autograd.grad(y, [leaves[i] for i in wanted], grad)
    grads = [None] * len(inputs)
    for i, g in zip(wanted, found):
        grads[i] = g
    return tuple(grads)


cross_selective_scan_cpp.register_autograd(_backward, setup_context=_setup)

_composite = composite('cpp')


def cross_selective_scan_compiled(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                                  channel_first):
    """The ``cpp`` backend's entry: the fused kernel without autograd, else the composite."""
    if needs_grad(x, x_proj_weight, dt_projs_weight, A, D, delta_bias):
        return _composite(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                          channel_first)
    batch, channels, height, width = x.shape
    x = x.contiguous()  # one copy if x came channels-last from a conv; the kernel reuses it
    dt_low, Bs, Cs = project(x.flatten(2), x_proj_weight, dt_projs_weight.shape[-1], A.shape[1])
    y = cross_selective_scan_cpp(x, dt_low, dt_projs_weight, A, Bs, Cs, D, delta_bias,
                                 route_table(order, height, width, x.device))
    y = y.view(batch, channels, height, width)
    return y if channel_first else y.permute(0, 2, 3, 1)
