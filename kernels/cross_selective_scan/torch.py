"""The ``torch`` backend of ``cross_selective_scan``: SS2D's scan core in plain tensor ops.

Its own routes (flips and transposes, no index tables) and a time-first chunk layout, so it exports
to ONNX with symbolic sizes; the recurrence is ``common/chunked_recurrence.py``'s.
"""
import torch
import torch.nn.functional as F

from ..common.chunked_recurrence import CHUNK, chain, chunk_count
from ..common.routes import NUM_ROUTES, is_column_major, is_reversed


def chunked_route_recurrence(log_decay, drive):
    """The chunked recurrence on route sequences already cut into chunks.

    log_decay, drive: (routes, CHUNK, batch, chunks, ...) float32, step t of chunk c of a route
    at [route, t, :, c]; log_decay is log(decay) <= 0. Returns h in the same layout. SS2D's core
    lays its routes out this way once (see ``cross_selective_scan_chunked``): each step of the
    walk reads whole blocks, and the running decay products are exp(cumsum(log_decay)).
    """
    # Steps taken as slices that keep their dim (split, cat): an ONNX graph then has no
    # squeeze/unsqueeze copies around each of the walk's multiply-adds.
    decays, drives = torch.exp(log_decay).split(1, dim=1), drive.split(1, dim=1)
    h = torch.zeros_like(drives[0])
    states = []
    for t in range(CHUNK):
        h = decays[t] * h + drives[t]
        states.append(h)
    h = torch.cat(states, 1)
    decay_from_start = torch.exp(torch.cumsum(log_decay, 1))
    # The chunks' (total decay, end state) pairs chained along the chunk dim (dim 2 of these).
    ends = chain(decay_from_start[:, -1].movedim(2, -1), h[:, -1].movedim(2, -1))
    carry_in = F.pad(ends[..., :-1], (1, 0)).movedim(-1, 2)
    return h + decay_from_start * carry_in.unsqueeze(1)


def softplus(x):
    """F.softplus (threshold 20) in elementwise ops that onnxruntime runs fast: its own Softplus
    kernel takes 3x the time of these on the CPU."""
    return torch.log1p(torch.exp(x.clamp(max=20.0))) + torch.relu(x - 20.0)


def _to_chunked_routes(x, order):
    """(B, C, H, W) -> its NUM_ROUTES routes as (routes, CHUNK, B, chunks, C): each route's
    sequence zero-padded to ``chunk_count`` chunks, step t of chunk c at [route, t, :, c]."""
    batch, channels, height, width = x.shape
    length = height * width
    chunks = chunk_count(length)
    # Channels last first: every move after this one (transposes, flips, the chunk layout)
    # then copies whole rows of C values, not single elements.
    x = x.permute(0, 2, 3, 1)
    by_rows, by_columns = x.flatten(1, 2), x.transpose(1, 2).flatten(1, 2)
    routes = []
    for route in range(NUM_ROUTES):
        seq = by_columns if is_column_major(order, route) else by_rows
        routes.append(seq.flip(1) if is_reversed(order, route) else seq)
    routes = F.pad(torch.stack(routes), (0, 0, 0, chunks * CHUNK - length))
    return routes.unflatten(2, (chunks, CHUNK)).permute(0, 3, 1, 2, 4)


def _merge_chunked_routes(y, height, width, order):
    """(routes, CHUNK, B, chunks, C) route outputs -> summed back in place, (B, H, W, C)."""
    length = height * width
    y = y.permute(0, 2, 3, 1, 4).flatten(2, 3)[:, :, :length]  # (routes, B, L, C)
    merged = None
    for route in range(NUM_ROUTES):
        seq = y[route]
        if is_reversed(order, route):
            seq = seq.flip(1)
        seq = seq.unflatten(1, (width, height)).transpose(1, 2) if \
            is_column_major(order, route) else seq.unflatten(1, (height, width))
        merged = seq if merged is None else merged + seq
    return merged


def cross_selective_scan_chunked(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                                 channel_first):
    """SS2D's scan core with the chunked scan: the ``torch`` backend of ``cross_selective_scan``.

    The routes are read with flips and transposes of the map (no index tables, which an ONNX
    export with symbolic sizes cannot build) and laid out once as (routes, CHUNK, B, chunks, C):
    the per-route projections are then one matmul per route over all tokens, and every step
    after them (delta, decays, drives, scan, C and D) runs in that layout.
    """
    batch, channels, height, width = x.shape
    routes, state = NUM_ROUTES, A.shape[1]
    rank = dt_projs_weight.shape[-1]
    xs = _to_chunked_routes(x.float(), order)
    tokens = xs.shape[:4]
    flat = xs.reshape(routes, -1, channels)
    dts, Bs, Cs = torch.matmul(flat, x_proj_weight.float().transpose(1, 2)).split(
        [rank, state, state], dim=-1)
    dt = torch.matmul(dts, dt_projs_weight.float().transpose(1, 2))
    if delta_bias is not None:
        dt = dt + delta_bias.float().view(routes, 1, channels)
    delta = softplus(dt).view(*tokens, channels)
    Bs, Cs = Bs.reshape(*tokens, state), Cs.reshape(*tokens, state)
    A = A.float().view(routes, 1, 1, 1, channels, state)
    if state == 1:  # VMamba v2's N = 1: no state dim at all
        log_decay = delta * A.squeeze(-1)
        y = chunked_route_recurrence(log_decay, delta * xs * Bs) * Cs
    else:
        log_decay = delta.unsqueeze(-1) * A  # (routes, CHUNK, B, chunks, C, N)
        drive = (delta * xs).unsqueeze(-1) * Bs.unsqueeze(-2)
        y = (chunked_route_recurrence(log_decay, drive) * Cs.unsqueeze(-2)).sum(-1)
    merged = _merge_chunked_routes(y, height, width, order)
    if D is not None:
        # Every route adds D_route * u at each pixel: once, after the merge, with the D summed.
        merged = merged + x.float().permute(0, 2, 3, 1) * D.float().view(routes, channels).sum(0)
    return merged.permute(0, 3, 1, 2) if channel_first else merged
