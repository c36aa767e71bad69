"""The ``cpp`` cross_selective_scan: SS2D's routes walked in place by one C++ pass.

The kernel works on the pixel-major (channels-last) map, so it vectorises across channels and
reads contiguous runs of channels in every route's order. Around it, two GEMMs: every route's
projection of every pixel at once (``x_proj`` as one matrix), and every route's delta from its
low-rank part. A map that comes channels-last from the depthwise conv is read without a copy, and
a channels-last model gets its (B, H, W, C) output without one.

Training runs the same kernel: its backward, ``vmamba::cross_selective_scan_cpp_backward``, is
one C++ pass per image that recomputes the forward of each route and block of channels and walks
it in reverse; no route copies of the map, no cross-scan/merge either way. Its oracle is
``pixel_major_scan_reference`` (tests/kernels/oracles.py).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.composite import pixel_major_projections
from ..common.route_kernel import (fake_gradients, gradients_for_autograd, route_scan,
                                  route_scan_gradients)
from ..common.routes import route_table


def whole_routes(pixels):
    """The route kernel's (segment, x_per_route, y_per_route) for SS2D: each route one sequence
    over the whole map, every route reading the map, their outputs summed."""
    return pixels.shape[1], False, False


@torch.library.custom_op('vmamba::cross_selective_scan_cpp', mutates_args=())
def cross_selective_scan_cpp(x: Tensor, delta: Tensor, projected: Tensor, A: Tensor,
                             D: Optional[Tensor], delta_bias: Optional[Tensor],
                             pixels: Tensor) -> Tensor:
    """``pixel_major_scan_reference`` in one C++ pass: (B, H, W, C) float32, delta with
    softplus."""
    return route_scan(x, delta, projected, A, D, delta_bias, pixels, *whole_routes(pixels))


@cross_selective_scan_cpp.register_fake
def _(x, delta, projected, A, D, delta_bias, pixels):
    return x.new_empty(x.shape, dtype=torch.float32)


@torch.library.custom_op('vmamba::cross_selective_scan_cpp_backward', mutates_args=())
def cross_selective_scan_cpp_backward(x: Tensor, delta: Tensor, projected: Tensor, A: Tensor,
                                      D: Optional[Tensor], delta_bias: Optional[Tensor],
                                      pixels: Tensor, grad_y: Tensor
                                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, ddelta, dprojected, dA, dD, ddelta_bias) of ``cross_selective_scan_cpp``
    (``route_scan_gradients``)."""
    return route_scan_gradients(x, delta, projected, A, D, delta_bias, pixels,
                                *whole_routes(pixels), grad_y)


@cross_selective_scan_cpp_backward.register_fake
def _(x, delta, projected, A, D, delta_bias, pixels, grad_y):
    return fake_gradients(x, delta, projected, A)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_y):
    x, delta, projected, A, D, delta_bias, pixels = ctx.saved_tensors
    gradients = cross_selective_scan_cpp_backward(x, delta, projected, A, D, delta_bias, pixels,
                                                  grad_y)
    return (*gradients_for_autograd(gradients, x, delta, projected, D, delta_bias), None)


cross_selective_scan_cpp.register_autograd(_backward, setup_context=_setup)


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
    """The ``cpp`` backend's cross_selective_scan: the kernel pair, for inference and training."""
    pixel_major, delta, projected = pixel_major_inputs(x, x_proj_weight, dt_projs_weight)
    height, width = x.shape[2:]
    y = cross_selective_scan_cpp(pixel_major, delta, projected, A, D, delta_bias,
                                 route_table(order, height, width, x.device))
    return y.permute(0, 3, 1, 2) if channel_first else y
