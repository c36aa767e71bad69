"""The ``torch`` backend: the selective scan in plain tensor ops, autograd- and export-safe.

The recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(delta_t A) in (0, 1]) is solved in chunks of
``CHUNK`` tokens, all chunks at once: a loop of ``CHUNK`` steps walks every chunk in parallel from
a zero state, then the state each chunk should have started from is the same recurrence over the
chunks' end states, one element per chunk, solved by the same function. Every operation multiplies
by decays <= 1, so no value can overflow however strong the decay (unlike cumulative-sum forms,
which divide by running products). The chunk length is a constant: no data-dependent control
flow, so ``torch.compile`` and ``torch.export`` see one static graph for any input.
"""
import torch
import torch.nn.functional as F

from ..routes import NUM_ROUTES, is_column_major, is_reversed
from ..scan_common import add_skip, prepare_delta

CHUNK = 16
# Doubling steps of the chain across chunks in a graph with symbolic sizes: enough for
# 2**MAX_DOUBLINGS chunks (a million tokens per route: a 4096 x 4096 map).
MAX_DOUBLINGS = 16


def linear_recurrence(decay, drive):
    """h_t = decay_t * h_{t-1} + drive_t along the last dim, h_{-1} = 0; decay broadcasts."""
    decay = decay.expand_as(drive)
    length = drive.shape[-1]
    if length == 0:
        return drive.clone()
    # Always padded to whole chunks, even a sequence shorter than one: the graph is the same
    # for every length, so an export with symbolic sizes holds no branch on them.
    chunks = (length + CHUNK - 1) // CHUNK
    pad = chunks * CHUNK - length
    decay = F.pad(decay, (0, pad), value=1.0).unflatten(-1, (chunks, CHUNK))
    drive = F.pad(drive, (0, pad)).unflatten(-1, (chunks, CHUNK))
    h, decay_from_start = _walk(decay, drive)
    # State entering each chunk: the end states chained through the chunks' total decays.
    ends = _chain(decay_from_start[..., -1], h[..., -1])
    carry_in = F.pad(ends[..., :-1], (1, 0))
    h = h + decay_from_start * carry_in.unsqueeze(-1)
    return h.flatten(-2)[..., :length]


def _walk(decay, drive):
    """The recurrence along the last dim, step by step: (h, running product of the decays)."""
    # Time first and contiguous, so each step reads and writes whole slabs, not strided columns.
    decay, drive = decay.movedim(-1, 0).contiguous(), drive.movedim(-1, 0).contiguous()
    # From a zero state, not from drive_0: the first decay still gets its (zero) gradient.
    h = torch.zeros_like(drive[0])
    product = torch.ones_like(decay[0])
    states, products = [], []
    for t in range(drive.shape[0]):
        h = decay[t] * h + drive[t]
        product = product * decay[t]
        states.append(h)
        products.append(product)
    return torch.stack(states, -1), torch.stack(products, -1)


def _chain(decay, drive):
    """The recurrence over the chunks' (total decay, end state) pairs, by recursive doubling:
    after the step with shift s every element holds its sum over the last 2s chunks."""
    chunks = drive.shape[-1]
    # A shape known in Python takes just the steps it needs; a symbolic one (an export with
    # dynamic sizes) takes enough for any input up to MAX_CHUNKS chunks, a fixed graph.
    steps = MAX_DOUBLINGS if isinstance(chunks, torch.SymInt) else max(chunks - 1, 1).bit_length()
    shift = 1
    for _ in range(steps):
        drive = drive + decay * _shifted(drive, shift, 0.0)
        decay = decay * _shifted(decay, shift, 1.0)
        shift *= 2
    return drive


def _shifted(x, shift, fill):
    """x moved ``shift`` places along the last dim, ``fill`` entering at the front."""
    # Cut first, then pad: never a temporary of length + shift (a dynamic-shape graph takes
    # shifts up to 2**15 whatever the length).
    kept = torch.sym_max(x.shape[-1] - shift, 0)
    return F.pad(x[..., :kept], (x.shape[-1] - kept, 0), value=fill)


def decays_and_drives(u, delta, A, B):
    """exp(delta A) and delta B u, float32, as (batch, groups, channels per group, N, L): B and C
    broadcast over a group's channels without copies. ``delta`` is prepared already."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    delta5 = delta.view(batch, groups, per_group, 1, length)
    decay = torch.exp(delta5 * A.float().view(1, groups, per_group, state, 1))
    drive = (delta5 * u.float().view(batch, groups, per_group, 1, length)) * \
        B.float().unsqueeze(2)
    return decay, drive


def selective_scan_chunked(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                           out_dtype=torch.float32):
    batch, dim, length = u.shape
    state = A.shape[1]
    decay, drive = decays_and_drives(u, prepare_delta(delta, delta_bias, delta_softplus), A, B)
    h = linear_recurrence(decay, drive)
    if state == 1:
        y = h.squeeze(3) * C.float()
    else:
        y = (h * C.float().unsqueeze(2)).sum(3)
    return add_skip(y.reshape(batch, dim, length), u, D, out_dtype)


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
    ends = _chain(decay_from_start[:, -1].movedim(2, -1), h[:, -1].movedim(2, -1))
    carry_in = F.pad(ends[..., :-1], (1, 0)).movedim(-1, 2)
    return h + decay_from_start * carry_in.unsqueeze(1)


def softplus(x):
    """F.softplus (threshold 20) in elementwise ops that onnxruntime runs fast: its own Softplus
    kernel takes 3x the time of these on the CPU."""
    return torch.log1p(torch.exp(x.clamp(max=20.0))) + torch.relu(x - 20.0)


def _to_chunked_routes(x, order):
    """(B, C, H, W) -> its NUM_ROUTES routes as (routes, CHUNK, B, chunks, C): each route's
    sequence zero-padded to whole chunks, step t of chunk c at [route, t, :, c]."""
    batch, channels, height, width = x.shape
    length = height * width
    chunks = (length + CHUNK - 1) // CHUNK
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
