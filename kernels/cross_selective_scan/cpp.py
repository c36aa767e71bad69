"""The ``cpp`` cross_selective_scan: SS2D's routes walked in place by one C++ pass.

The kernel works on the pixel-major (channels-last) map, so it vectorises across channels and
reads contiguous runs of channels in every route's order. Around it, two GEMMs: every route's
projection of every pixel at once (``x_proj`` as one matrix), and every route's delta from its
low-rank part. A map that comes channels-last from the depthwise conv is read without a copy, and
a channels-last model gets its (B, H, W, C) output without one.

Inference only in practice (``cross_selective_scan`` takes the composite under autograd, which
needs no recomputation), but a complete operator: see ``fused.py``.
"""
from typing import Optional

import torch
from torch import Tensor

from ..cpu_extension import float32_contiguous, load_extension
from ..routes import route_table
from ..scan_common import needs_grad
from ..selective_scan.cpp import selective_scan_cpp
from .composite import composite, pixel_major_projections, pixel_major_scan_reference
from .fused import register_fused_operator


@torch.library.custom_op('vmamba::cross_selective_scan_cpp', mutates_args=())
def cross_selective_scan_cpp(x: Tensor, delta: Tensor, projected: Tensor, A: Tensor,
                             D: Optional[Tensor], delta_bias: Optional[Tensor],
                             pixels: Tensor) -> Tensor:
    """``pixel_major_scan_reference`` in one C++ pass: (B, H, W, C) float32, delta with
    softplus."""
    args = [float32_contiguous(t, x) for t in (x, delta, projected, A, D, delta_bias)]
    return load_extension().cross_selective_scan_forward(*args, True, pixels.contiguous())


register_fused_operator(cross_selective_scan_cpp, selective_scan_cpp,
                        reference=pixel_major_scan_reference, num_differentiable=6,
                        output_shape=lambda x: x.shape)


def pixel_major_inputs(x, x_proj_weight, dt_projs_weight):
    """The kernel's map, delta and projections of a (B, C, H, W) map, by two GEMMs.

    Returns x as (B, H, W, C) (a view when x is channels-last in memory), the routes' delta
    (routes, B, L, C) and the projections (B, L, routes, R + 2N).
    """
    batch, channels, height, width = x.shape
    routes, _, rank = dt_projs_weight.shape
    pixel_major, projected = pixel_major_projections(x, x_proj_weight)
    low_rank = projected[..., :rank].permute(2, 0, 1, 3).reshape(routes, -1, rank)
    delta = torch.bmm(low_rank, dt_projs_weight.transpose(1, 2))
    return pixel_major, delta.view(routes, batch, height * width, channels), projected


def cross_selective_scan_compiled(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                                  channel_first):
    """The ``cpp`` backend's cross_selective_scan: the kernel without autograd, else the
    composite of the ``cpp`` scan."""
    if needs_grad(x, x_proj_weight, dt_projs_weight, A, D, delta_bias):
        return composite('cpp')(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                                channel_first)
    pixel_major, delta, projected = pixel_major_inputs(x, x_proj_weight, dt_projs_weight)
    height, width = x.shape[2:]
    y = cross_selective_scan_cpp(pixel_major, delta, projected, A, D, delta_bias,
                                 route_table(order, height, width, x.device))
    return y.permute(0, 3, 1, 2) if channel_first else y
