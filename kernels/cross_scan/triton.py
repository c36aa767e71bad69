"""Cross-scan and cross-merge in Triton: one pass each, each the other's backward.

Both read the route geometry from the tables of ``common/routes.py``: the scan gathers pixel
``route_table[route, t]`` into step t of each route, the merge sums step ``steps[route, q]`` of
each route into pixel q (``pixel_steps``, the inverse table). They are ``torch.library``
operators, ``vmamba::cross_scan_triton`` and ``vmamba::cross_merge_triton``; the scan order is an
argument and the tables are looked up inside, from caches, so compiled graphs carry no tables.
"""
import torch
from torch import Tensor

from ..common.routes import NUM_ROUTES, route_table, step_table
from ..common.triton_common import tl, triton

if triton is not None:

    @triton.jit
    def _cross_scan_copy(x_ptr, pixels_ptr, routes_ptr, channels, length,
                         CHANNEL_FIRST: tl.constexpr, ROUTES: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
        b = tl.program_id(0)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        t = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)
        t_ok = t < length
        mask = (c < channels)[:, None] & t_ok[None, :]
        for route in tl.static_range(ROUTES):
            p = tl.load(pixels_ptr + route * length + t, mask=t_ok, other=0)
            if CHANNEL_FIRST:
                src = x_ptr + (b * channels + c[:, None]) * length + p[None, :]
            else:
                src = x_ptr + (b * length + p[None, :]) * channels + c[:, None]
            value = tl.load(src, mask=mask)
            tl.store(routes_ptr + ((b * ROUTES + route) * channels + c[:, None]) * length +
                     t[None, :], value, mask=mask)

    @triton.jit
    def _cross_merge_sum(routes_ptr, steps_ptr, out_ptr, channels, length,
                         CHANNEL_FIRST: tl.constexpr, ROUTES: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
        b = tl.program_id(0)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        q = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)
        q_ok = q < length
        mask = (c < channels)[:, None] & q_ok[None, :]
        total = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
        for route in tl.static_range(ROUTES):
            t = tl.load(steps_ptr + route * length + q, mask=q_ok, other=0)
            total += tl.load(routes_ptr + ((b * ROUTES + route) * channels + c[:, None]) * length +
                             t[None, :], mask=mask).to(tl.float32)
        if CHANNEL_FIRST:
            dst = out_ptr + (b * channels + c[:, None]) * length + q[None, :]
        else:
            dst = out_ptr + (b * length + q[None, :]) * channels + c[:, None]
        tl.store(dst, total.to(out_ptr.dtype.element_ty), mask=mask)


BLOCK_CHANNELS, BLOCK_STEPS = 32, 64

def _map_size(x, channel_first):
    """(channels, height, width) of a (B, C, H, W) or (B, H, W, C) map."""
    if channel_first:
        return x.shape[1], x.shape[2], x.shape[3]
    return x.shape[3], x.shape[1], x.shape[2]


def _grid(batch, channels, length):
    return (batch, triton.cdiv(channels, BLOCK_CHANNELS), triton.cdiv(length, BLOCK_STEPS))


@torch.library.custom_op('vmamba::cross_scan_triton', mutates_args=())
def cross_scan_op(x: Tensor, order: str, channel_first: bool) -> Tensor:
    """A (B, C, H, W) map -- (B, H, W, C) unless channel_first -- as routes (B, routes, C, H*W)."""
    channels, height, width = _map_size(x, channel_first)
    pixels = route_table(order, height, width, x.device)
    num_routes, length = pixels.shape
    x = x.contiguous()
    routes = x.new_empty(x.shape[0], num_routes, channels, length)
    _cross_scan_copy[_grid(x.shape[0], channels, length)](
        x, pixels, routes, channels, length, CHANNEL_FIRST=channel_first, ROUTES=num_routes,
        BLOCK_C=BLOCK_CHANNELS, BLOCK_T=BLOCK_STEPS)
    return routes


@cross_scan_op.register_fake
def _(x, order, channel_first):
    channels, height, width = _map_size(x, channel_first)
    return x.new_empty(x.shape[0], NUM_ROUTES, channels, height * width)


@torch.library.custom_op('vmamba::cross_merge_triton', mutates_args=())
def cross_merge_op(routes: Tensor, height: int, width: int, order: str,
                   channel_first: bool) -> Tensor:
    """Routes (B, routes, C, H*W) summed back into place: (B, C, H, W), or (B, H, W, C)."""
    steps = step_table(order, height, width, routes.device)
    if routes.dim() != 4 or (routes.shape[1], routes.shape[3]) != tuple(steps.shape):
        raise ValueError(f'cross_merge_triton: routes of shape {tuple(routes.shape)} do not fit '
                         f'the {tuple(steps.shape)} route table of a {height}x{width} map; '
                         f'pass (B, routes, C, H*W).')
    num_routes, length = steps.shape
    routes = routes.contiguous()
    batch, channels = routes.shape[0], routes.shape[2]
    shape = (batch, channels, height, width) if channel_first else (batch, height, width,
                                                                    channels)
    out = routes.new_empty(shape)
    _cross_merge_sum[_grid(batch, channels, length)](
        routes, steps, out, channels, length, CHANNEL_FIRST=channel_first, ROUTES=num_routes,
        BLOCK_C=BLOCK_CHANNELS, BLOCK_T=BLOCK_STEPS)
    return out


@cross_merge_op.register_fake
def _(routes, height, width, order, channel_first):
    batch, channels = routes.shape[0], routes.shape[2]
    if channel_first:
        return routes.new_empty(batch, channels, height, width)
    return routes.new_empty(batch, height, width, channels)


def _scan_setup(ctx, inputs, output):
    x, order, channel_first = inputs
    _, ctx.height, ctx.width = _map_size(x, channel_first)
    ctx.order, ctx.channel_first = order, channel_first


def _scan_backward(ctx, grad_routes):
    return (cross_merge_op(grad_routes, ctx.height, ctx.width, ctx.order, ctx.channel_first),
            None, None)


cross_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup)


def _merge_setup(ctx, inputs, output):
    _, _, _, ctx.order, ctx.channel_first = inputs


def _merge_backward(ctx, grad_map):
    return cross_scan_op(grad_map, ctx.order, ctx.channel_first), None, None, None, None


cross_merge_op.register_autograd(_merge_backward, setup_context=_merge_setup)


def cross_scan_triton(x, order, channel_first):
    """The ``triton`` backend's cross_scan entry (see ``cross_scan.cross_scan``)."""
    return cross_scan_op(x, order, channel_first)


def cross_merge_triton(routes, height, width, order, channel_first):
    """The ``triton`` backend's cross_merge entry (see ``cross_scan.cross_merge``)."""
    return cross_merge_op(routes, height, width, order, channel_first)
