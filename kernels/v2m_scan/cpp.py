"""The ``cpp`` v2m_scan: every line of a stage walked in place on the channels-last map by the
C++ route kernel (``csrc/selective_scan_cpu.cpp``, ``route_scan_forward`` / ``_backward``).

The stage's lines are the kernel's routes (``common/lines.py``: one route per orientation, its
lines end to end, each a segment that starts from a zero state). The row stage's routes all read
the one map and keep their own outputs; the column stage's each read their own channels and are
summed. Around the kernel, two GEMMs: every orientation's projection of every pixel at once, and
every orientation's delta from its low-rank part; the fixed ones of B (column stage) or C (row
stage) join the projections as columns of ones. Training runs the kernel's backward, one C++
pass per image that recomputes each line's forward and walks it in reverse.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.lines import NUM_ORIENTATIONS, line_length, line_table
from ..common.route_kernel import (fake_gradients, gradients_for_autograd, route_scan,
                                   route_scan_gradients)


@torch.library.custom_op('vmamba::v2m_scan_cpp', mutates_args=())
def v2m_scan_cpp(x: Tensor, delta: Tensor, projected: Tensor, A: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], pixels: Tensor, line: int,
                 orientation_inputs: bool, orientation_outputs: bool) -> Tensor:
    """One stage's lines in one C++ pass: x (B, H, W, C) or, with ``orientation_inputs``,
    (B, H, W, 4 * C); delta (4, B, H * W, C) before its bias; projected (B, H * W, 4, R + 2N);
    ``line`` tokens per line. Returns float32 (B, H, W, C), the orientations summed, or
    (B, H, W, 4 * C) with ``orientation_outputs``."""
    return route_scan(x, delta, projected, A, D, delta_bias, pixels, line, orientation_inputs,
                      orientation_outputs)


@v2m_scan_cpp.register_fake
def _(x, delta, projected, A, D, delta_bias, pixels, line, orientation_inputs,
      orientation_outputs):
    channels = delta.shape[-1] * (NUM_ORIENTATIONS if orientation_outputs else 1)
    return x.new_empty((*x.shape[:3], channels), dtype=torch.float32)


@torch.library.custom_op('vmamba::v2m_scan_cpp_backward', mutates_args=())
def v2m_scan_cpp_backward(x: Tensor, delta: Tensor, projected: Tensor, A: Tensor,
                          D: Optional[Tensor], delta_bias: Optional[Tensor], pixels: Tensor,
                          line: int, orientation_inputs: bool, orientation_outputs: bool,
                          grad_y: Tensor
                          ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, ddelta, dprojected, dA, dD, ddelta_bias) of ``v2m_scan_cpp``
    (``route_scan_gradients``)."""
    return route_scan_gradients(x, delta, projected, A, D, delta_bias, pixels, line,
                                orientation_inputs, orientation_outputs, grad_y)


@v2m_scan_cpp_backward.register_fake
def _(x, delta, projected, A, D, delta_bias, pixels, line, orientation_inputs,
      orientation_outputs, grad_y):
    return fake_gradients(x, delta, projected, A)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:7])
    ctx.line, ctx.orientation_inputs, ctx.orientation_outputs = inputs[7:]


def _backward(ctx, grad_y):
    x, delta, projected, A, D, delta_bias, pixels = ctx.saved_tensors
    gradients = v2m_scan_cpp_backward(x, delta, projected, A, D, delta_bias, pixels, ctx.line,
                                      ctx.orientation_inputs, ctx.orientation_outputs, grad_y)
    return (*gradients_for_autograd(gradients, x, delta, projected, D, delta_bias), None, None,
            None, None)


v2m_scan_cpp.register_autograd(_backward, setup_context=_setup)


def v2m_scan_compiled(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, stage):
    """The ``cpp`` backend's v2m_scan: the kernel pair, for inference and training."""
    batch, height, width = x.shape[:3]
    channels = x.shape[-1]
    rank, state = dt_projs_weight.shape[2], A.shape[1]
    pixels = batch * height * width
    x_proj_weight, dt_projs_weight = x_proj_weight.to(x.dtype), dt_projs_weight.to(x.dtype)
    if stage == 'row':  # every orientation's projection of the one map: one GEMM
        projected = x.reshape(pixels, channels) @ x_proj_weight.reshape(-1, channels).t()
        projected = projected.view(pixels, NUM_ORIENTATIONS, rank + state)
    else:  # each orientation's projection of its own channels
        projected = torch.einsum('pkc,krc->pkr', x.reshape(pixels, NUM_ORIENTATIONS, channels),
                                 x_proj_weight)
    low_rank = projected[..., :rank].transpose(0, 1)  # (4, pixels, R)
    delta = torch.bmm(low_rank, dt_projs_weight.transpose(1, 2))
    ones = projected.new_ones(pixels, NUM_ORIENTATIONS, state)
    fixed_c = stage == 'row'
    scan_inputs = torch.cat([projected, ones] if fixed_c else
                            [projected[..., :rank], ones, projected[..., rank:]], dim=-1)
    y = v2m_scan_cpp(x.reshape(batch, height, width, -1),
                     delta.view(NUM_ORIENTATIONS, batch, height * width, channels),
                     scan_inputs.view(batch, height * width, NUM_ORIENTATIONS, -1), A, D,
                     delta_bias, line_table(stage, height, width, x.device),
                     line_length(stage, height, width), stage == 'column', stage == 'row')
    return y.view(batch, height, width, NUM_ORIENTATIONS, channels) if stage == 'row' else y
