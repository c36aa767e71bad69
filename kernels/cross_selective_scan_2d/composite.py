"""SS2D's scan core with 2D scans: each route read as a grid and scanned by ``selective_scan_2d``.

A route of a row-major order walks the H x W map row by row (reversed routes from the opposite
corner), so it is the H x W grid of its own step order; a column-major route walks the transposed
map, the W x H grid. ``composite_2d(backend)`` is the ``cross_selective_scan_2d`` of any backend,
built from its ``cross_scan``, ``selective_scan_2d`` and ``cross_merge``.
``fused_scan_2d_reference`` computes what a fused kernel computes: its oracle and the
recomputation its backward differentiates.
"""
import torch

from ..cross_selective_scan.composite import along_routes, route_parameters
from ..dispatch import implementation
from ..routes import NUM_ROUTES, is_column_major


def route_grid(order, route, height, width):
    """(rows, columns) of the grid a route's steps form."""
    return (width, height) if is_column_major(order, route) else (height, width)


def route_widths(order, height, width, device=None):
    """(NUM_ROUTES,) int64: the grid width of each route, the table the fused kernels read."""
    return torch.tensor([route_grid(order, r, height, width)[1] for r in range(NUM_ROUTES)],
                        dtype=torch.int64, device=device)


def grid_groups(order, height, width):
    """[((rows, columns), [routes])]: the routes that share a grid, scanned by one call."""
    groups = {}
    for route in range(NUM_ROUTES):
        groups.setdefault(route_grid(order, route, height, width), []).append(route)
    return list(groups.items())


def scan_routes_2d(selective_scan_2d, u, delta, A, B, C, D, delta_bias, order, height, width):
    """The 2D scans of routes (B, routes, K, L) in their own step orders: (B, routes, C, L)
    float32. A, D, delta_bias hold one block of rows per route (routes * C rows)."""
    batch, routes, channels, length = u.shape
    A = A.view(routes, channels, -1)
    D = D.view(routes, channels) if D is not None else None
    delta_bias = delta_bias.view(routes, channels) if delta_bias is not None else None
    outputs = [None] * routes
    for (rows, columns), members in grid_groups(order, height, width):
        # One call per grid shape; a square map is one call over all routes.
        pick = members if len(members) < routes else slice(None)
        y = selective_scan_2d(
            u[:, pick].flatten(1, 2), delta[:, pick].flatten(1, 2), A[pick].flatten(0, 1),
            B[:, pick], C[:, pick],
            D=D[pick].flatten() if D is not None else None,
            delta_bias=delta_bias[pick].flatten() if delta_bias is not None else None,
            delta_softplus=True, height=rows, width=columns, out_dtype=torch.float32)
        for position, route in enumerate(members):
            outputs[route] = y.view(batch, len(members), channels, length)[:, position]
    return torch.stack(outputs, 1)


def composite_2d(backend):

    def cross_selective_scan_2d(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                                channel_first):
        # Looked up here, not when built: the operations may register after this one.
        scan = implementation('cross_scan', backend).fn
        selective_scan_2d = implementation('selective_scan_2d', backend).fn
        merge = implementation('cross_merge', backend).fn
        height, width = x.shape[2:]
        routes = scan(x, order, True)  # (B, routes, C, L)
        dts, Bs, Cs = route_parameters(routes, x_proj_weight, dt_projs_weight, A.shape[1])
        ys = scan_routes_2d(selective_scan_2d, routes, dts, A, Bs, Cs, D, delta_bias, order,
                            height, width)
        return merge(ys, height, width, order, channel_first)

    return cross_selective_scan_2d


def fused_scan_2d_reference(x, dt_low, dt_weight, A, B, C, D, delta_bias, pixels, widths,
                            selective_scan_2d):
    """What a fused 2D kernel returns: (B, C, L) float32, the routes' outputs summed in place.

    As ``fused_scan_reference``, plus ``widths``, the (routes,) grid width of each route
    (``route_widths``); route r is a (L / widths[r]) x widths[r] grid of its steps.
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
