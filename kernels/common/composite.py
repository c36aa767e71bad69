"""SS2D's scan core as three operations: cross-scan, a scan, cross-merge; shared by
``cross_selective_scan`` and ``cross_selective_scan_2d``.

``composite(backend)`` is the ``cross_selective_scan`` of any backend, built from that backend's
``cross_scan``, ``selective_scan`` and ``cross_merge``; ``composite_2d(backend)`` the
``cross_selective_scan_2d`` built from its ``cross_scan``, ``selective_scan_2d`` and
``cross_merge``. They are the backends without a fused kernel, and what the fused ones run under
autograd where they have no backward kernel. ``check_core_inputs`` is both operations' contract.
"""
import torch

from ..dispatch import implementation
from .routes import NUM_ROUTES, is_column_major


def check_core_inputs(operation, x, x_proj_weight, dt_projs_weight, A):
    """The map and route weights against each other; errors name ``operation`` and the input."""
    if x.dim() != 4:
        raise ValueError(f'{operation} expects a (B, C, H, W) map, got shape {tuple(x.shape)}.')
    channels = x.shape[1]
    expected = {'x_proj_weight': (NUM_ROUTES, None, channels),
                'dt_projs_weight': (NUM_ROUTES, channels, None),
                'A': (NUM_ROUTES * channels, None)}
    for name, t in (('x_proj_weight', x_proj_weight), ('dt_projs_weight', dt_projs_weight),
                    ('A', A)):
        shape = expected[name]
        if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
            raise ValueError(f'{operation}: {name} has shape {tuple(t.shape)}, expected '
                             f"{tuple('*' if s is None else s for s in shape)} for {channels} "
                             f'channels.')


def project(x, x_proj_weight, rank, state):
    """Per-route projections of a (B, C, L) sequence: (delta low rank, B, C), in its order."""
    projected = torch.einsum('kcd,bdl->bkcl', x_proj_weight, x)
    return projected.split([rank, state, state], dim=2)


def route_parameters(routes, x_proj_weight, dt_projs_weight, state):
    """The scan's delta, B and C of each route (B, routes, K, L), in the route's own order."""
    projected = torch.einsum('bkdl,kcd->bkcl', routes, x_proj_weight)
    dts, Bs, Cs = projected.split([dt_projs_weight.shape[-1], state, state], dim=2)
    return torch.einsum('bkrl,kdr->bkdl', dts, dt_projs_weight), Bs, Cs


def composite(backend):
    """``cross_selective_scan`` from ``backend``'s ``cross_scan``, ``selective_scan`` and
    ``cross_merge``; an operation without ``backend`` runs its ``torch`` one (the dispatch's rule
    for names an operation lacks: cross-scan and merge are tensor-op gathers but on Triton)."""

    def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                             channel_first):
        # Looked up here, not when built: the three operations may register after this one.
        scan = implementation('cross_scan', backend).fn
        selective_scan = implementation('selective_scan', backend).fn
        merge = implementation('cross_merge', backend).fn
        batch, channels, height, width = x.shape
        length = height * width
        routes = scan(x, order, True)  # (B, routes, C, L)
        dts, Bs, Cs = route_parameters(routes, x_proj_weight, dt_projs_weight, A.shape[1])
        ys = selective_scan(routes.reshape(batch, -1, length), dts.reshape(batch, -1, length),
                            A, Bs, Cs, D=D, delta_bias=delta_bias, delta_softplus=True,
                            out_dtype=torch.float32)
        return merge(ys.view(batch, NUM_ROUTES, channels, length), height, width, order,
                     channel_first)

    return cross_selective_scan


def along_routes(t, pixels):
    """(B, routes, K, L) in pixel order -> each route's rows in its own step order."""
    batch, routes, rows, length = t.shape
    return t.gather(-1, pixels.view(1, routes, 1, length).expand(batch, routes, rows, length))


def pixel_major_projections(x, x_proj_weight):
    """A (B, C, H, W) map as (B, H, W, C) (a view when it is channels-last in memory) and every
    route's projection of every pixel, (B, L, routes, R + 2N), by one GEMM."""
    batch, channels, height, width = x.shape
    pixel_major = x.permute(0, 2, 3, 1).contiguous()
    projected = pixel_major.view(-1, channels) @ x_proj_weight.reshape(-1, channels).t()
    return pixel_major, projected.view(batch, height * width, x_proj_weight.shape[0], -1)


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
    """``cross_selective_scan_2d`` from ``backend``'s ``cross_scan``, ``selective_scan_2d`` and
    ``cross_merge`` (the same rule for names an operation lacks)."""

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
