"""The ``cpp`` cross_selective_scan_2d: SS2D's routes scanned as 2D grids by one C++ pass.

As ``cross_selective_scan/cpp.py`` with the 2D scan: the kernel reads the route table and each
route's grid width (``route_widths``). Inference only in practice (under autograd the entry takes
``composite_2d('cpp')``), but a complete operator: its fake implementation and autograd are
``register_fused_operator``'s, whose backward recomputes ``fused_scan_2d_reference`` on
``vmamba::selective_scan_2d_cpp`` and differentiates it (inference is what the kernel is for; the
composite serves training without recomputation).
"""
from typing import Optional

import torch
from torch import Tensor

from ..common.composite import along_routes, composite_2d, project, route_widths
from ..common.cpu_extension import float32_contiguous
from ..common.routes import cached_table, route_table
from ..common.scan_common import needs_grad
from ..selective_scan_2d.cpp import load_extension, selective_scan_2d_cpp
from ..selective_scan_2d.cpp import unavailable_reason  # noqa: F401  (the backend's, re-exported)

# The fused operators' differentiable inputs come first: x, dt_low, dt_weight, A, B, C, D,
# delta_bias; route tables follow.
NUM_DIFFERENTIABLE = 8


def channel_first_output(x):
    """(B, C, L) for a (B, C, H, W) map: what the channel-first fused kernels return."""
    return x.shape[0], x.shape[1], x.shape[2] * x.shape[3]


def register_fused_operator(fused_op, selective_scan, reference):
    """Fake implementation and autograd of ``fused_op``; ``selective_scan(u, delta, A, B, C, D,
    delta_bias, delta_softplus)`` is the differentiable scan the backward recomputes with, through
    ``reference(*differentiable inputs, *tables, selective_scan)``. The first
    ``NUM_DIFFERENTIABLE`` inputs are differentiable; the float32 output is (B, C, L)."""

    @fused_op.register_fake
    def _(x, *rest):
        return x.new_empty(channel_first_output(x), dtype=torch.float32)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        differentiable = ctx.saved_tensors[:NUM_DIFFERENTIABLE]
        tables = ctx.saved_tensors[NUM_DIFFERENTIABLE:]
        wanted = [i for i, t in enumerate(differentiable)
                  if t is not None and ctx.needs_input_grad[i]]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(i in wanted) if t is not None else None
                      for i, t in enumerate(differentiable)]
            y = reference(*leaves, *tables, selective_scan)
            found = torch.autograd.grad(y, [leaves[i] for i in wanted], grad)
        grads = [None] * len(ctx.saved_tensors)
        for i, g in zip(wanted, found):
            grads[i] = g
        return tuple(grads)

    fused_op.register_autograd(backward, setup_context=setup)


def fused_entry(fused_op, tracked, tables):
    """A backend's cross_selective_scan: ``fused_op`` without autograd, else ``tracked`` (the
    backend's composite); ``tables(order, H, W, device)`` gives the kernel's tables."""

    def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                             channel_first):
        if needs_grad(x, x_proj_weight, dt_projs_weight, A, D, delta_bias):
            return tracked(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                           channel_first)
        batch, channels, height, width = x.shape
        x = x.contiguous()  # one copy if x came channels-last from a conv; the kernel reuses it
        dt_low, Bs, Cs = project(x.flatten(2), x_proj_weight, dt_projs_weight.shape[-1],
                                 A.shape[1])
        y = fused_op(x, dt_low, dt_projs_weight, A, Bs, Cs, D, delta_bias,
                     *tables(order, height, width, x.device))
        y = y.view(batch, channels, height, width)
        return y if channel_first else y.permute(0, 2, 3, 1)

    return cross_selective_scan


def fused_scan_2d_reference(x, dt_low, dt_weight, A, B, C, D, delta_bias, pixels, widths,
                            selective_scan_2d):
    """What a fused 2D kernel returns: (B, C, L) float32, the routes' outputs summed in place.

    x: (B, C, H, W); dt_low, B, C: (B, routes, K, L), each pixel's route projections in pixel
    order; ``pixels`` the route table; ``widths`` the (routes,) grid width of each route
    (``route_widths``): route r is a (L / widths[r]) x widths[r] grid of its steps.
    """
    batch, channels = x.shape[:2]
    routes, length = pixels.shape
    u = x.reshape(batch, 1, channels, length).expand(batch, routes, channels, length)
    u = along_routes(u, pixels)
    delta = torch.einsum('bkrl,kdr->bkdl', along_routes(dt_low, pixels), dt_weight)
    B, C = along_routes(B, pixels), along_routes(C, pixels)
    A = A.view(routes, channels, -1)
    ys = []
    for route, width in enumerate(widths.tolist()):
        ys.append(selective_scan_2d(
            u[:, route], delta[:, route], A[route], B[:, route:route + 1], C[:, route:route + 1],
            D.view(routes, channels)[route] if D is not None else None,
            delta_bias.view(routes, channels)[route] if delta_bias is not None else None,
            True, length // width, width).float())
    steps = torch.argsort(pixels, dim=-1)
    return along_routes(torch.stack(ys, 1), steps).sum(1)


@torch.library.custom_op('vmamba::cross_selective_scan_2d_cpp', mutates_args=())
def cross_selective_scan_2d_cpp(x: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor,
                                B: Tensor, C: Tensor, D: Optional[Tensor],
                                delta_bias: Optional[Tensor], pixels: Tensor,
                                widths: Tensor) -> Tensor:
    """``fused_scan_2d_reference`` in one C++ pass: (B, C, L) float32, delta with softplus."""
    args = [float32_contiguous(t, x) for t in (x, dt_low, dt_weight, A, B, C, D, delta_bias)]
    return load_extension().cross_selective_scan_2d_forward(*args, True, pixels.contiguous(),
                                                            widths.contiguous())


# fused_scan_2d_reference calls its scan as (u, delta, A, B, C, D, delta_bias, True, height,
# width): the custom op's own positional signature.
register_fused_operator(cross_selective_scan_2d_cpp, selective_scan_2d_cpp,
                        reference=fused_scan_2d_reference)


def route_tables_2d(order, height, width, device):
    """The fused 2D kernel's tables: the route table and each route's grid width."""
    return (route_table(order, height, width, device),
            cached_table(route_widths, order, height, width, device))


cross_selective_scan_2d_compiled = fused_entry(cross_selective_scan_2d_cpp,
                                               tracked=composite_2d('cpp'),
                                               tables=route_tables_2d)
