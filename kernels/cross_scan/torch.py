"""The ``torch`` cross-scan and cross-merge: gathers along the route tables (``common/routes.py``).

Any device, autograd (each is the other's adjoint, and autograd derives that by itself), and
traceable with symbolic H and W, since the tables are built from ``arange``.
"""
from ..common.routes import pixel_steps, route_pixels


def cross_scan_gather(x, order, channel_first):
    """(B, C, H, W) or (B, H, W, C) -> routes (B, NUM_ROUTES, C, H*W)."""
    if not channel_first:
        x = x.permute(0, 3, 1, 2)
    batch, channels, height, width = x.shape
    pixels = route_pixels(order, height, width, x.device)  # (routes, L)
    routes = x.flatten(2).index_select(-1, pixels.flatten())  # (B, C, routes * L)
    return routes.unflatten(-1, pixels.shape).transpose(1, 2).contiguous()


def cross_merge_gather(routes, height, width, order, channel_first):
    """Routes (B, NUM_ROUTES, C, H*W) summed back into place: (B, C, H, W) or (B, H, W, C)."""
    batch, num_routes, channels, length = routes.shape
    steps = pixel_steps(order, height, width, routes.device)  # (routes, L)
    index = steps.view(1, num_routes, 1, length).expand(batch, num_routes, channels, length)
    merged = routes.gather(-1, index).sum(1)  # (B, C, L) in pixel order
    if channel_first:
        return merged.unflatten(-1, (height, width))
    return merged.transpose(1, 2).unflatten(1, (height, width))
