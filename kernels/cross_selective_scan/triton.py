"""The ``triton`` cross_selective_scan: SS2D's core on the pixel-major map, forward and backward.

One program owns a block of channels of one image and walks the four routes in turn, each in
chunks of its steps. A chunk's pixels come from the route table; at each pixel the program reads
a contiguous run of channels of the (B, H, W, C) map (coalesced in every scan order), forms the
route's delta from its low-rank projection (no (routes, B, L, C) delta in memory), scans the chunk
as an associative scan and adds the route's output into the pixel's (B, H, W, C) output: the
first route writes it, the others add (a barrier between routes, since another thread of the
program may own the pixel in the next route). Nothing of shape (B, routes, C, L) reaches memory.

The backward walks the routes the same way and the chunks in reverse. It recomputes each chunk
from the state that entered it (saved by the forward, (B, routes, C, N, chunks)), takes
``a_t h_{t-1}`` as ``h_t - delta_t B_t u_t`` (the official kernel's identity) and runs the adjoint
recurrence dh_t = C_t dy_t + a_{t+1} dh_{t+1} as a reverse associative scan. The map's gradient
is summed over routes in place like the output; the gradients of the projections (delta's
low-rank part, B, C) are summed over the block's channels in the kernel and over blocks and
images by a plain reduction afterwards: no atomics, so the backward is deterministic.

Operators: ``vmamba::cross_selective_scan_triton`` (y, states) and
``vmamba::cross_selective_scan_triton_backward``; the first's autograd calls the second. Their
oracle is ``pixel_major_low_rank_reference`` (tests/kernels/oracles.py).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.composite import pixel_major_projections
from ..common.routes import route_table
from ..common.triton_common import pair_combine, tl, triton

# Elements of one (channels x N x chunk) tile, and warps per program. The backward holds about a
# dozen such tensors, so the tile is the backward's and the forward uses the same chunks (its
# states are per chunk). ptxas for sm_90a, VMamba-T's N = 1 (bfloat16 maps): 1024 elements over
# 8 warps compile without register spills at every stage's width (backward 175-176 registers,
# forward 116); 2048 over 4 warps spilled 720-808 bytes in the backward.
TILE = 1024
NUM_WARPS = 8
MAX_BLOCK_D = 64


def tiling(channels, state):
    """(N padded to a power of two, channels per program, tokens per chunk) for these shapes.

    Plain Python, so fake implementations size the saved states without Triton. Channels per
    program: the largest power of two up to 64 that divides the channels (no idle lanes), else
    the channels rounded up to a power of two; fewer when N is large, to keep the tile.
    """
    state_pad = 1 << max(0, int(state) - 1).bit_length()
    block_d = MAX_BLOCK_D
    while block_d > 8 and int(channels) % block_d:
        block_d //= 2
    if int(channels) % block_d:
        block_d = min(MAX_BLOCK_D, 1 << max(0, int(channels) - 1).bit_length())
    while block_d > 8 and block_d * state_pad * 16 > TILE:
        block_d //= 2
    chunk = max(16, min(128, TILE // (block_d * state_pad)))
    return state_pad, block_d, chunk


def num_chunks(length, chunk):
    """Chunks covering ``length`` tokens; integer arithmetic only, so symbolic lengths trace."""
    return (length + chunk - 1) // chunk


if triton is not None:

    @triton.jit
    def _route_step(proj_ptr, w_ptr, bias, A, row, route, d, row_ok, t_ok, dim, rank,
                    HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr):
        """Delta before softplus, after it, and exp(delta A), at the projection rows ``row``:
        delta = dt_weight[route] @ (the row's low-rank part) + bias."""
        raw = tl.zeros((BLOCK_D, CHUNK), dtype=tl.float32)
        for r in range(rank):
            w = tl.load(w_ptr + (route * dim + d) * rank + r, mask=row_ok, other=0.0)
            low = tl.load(proj_ptr + row + r, mask=t_ok, other=0.0)
            raw += w.to(tl.float32)[:, None] * low.to(tl.float32)[None, :]
        if HAS_BIAS:
            raw += bias[:, None]
        step = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(raw)))
        decay = tl.exp(step[:, None, :] * A[:, :, None])
        return raw, step, decay

    @triton.jit
    def _scan_chunk(x_ptr, proj_ptr, w_ptr, bias, A, h0, at_pixel, row, route, d, n, row_ok, t_ok,
                    mask, bc_mask, dim, rank, state, HAS_BIAS: tl.constexpr,
                    BLOCK_D: tl.constexpr, CHUNK: tl.constexpr):
        """One chunk of a route from the state ``h0`` entering it: the map's values u, delta
        before and after softplus, B, C, the inflow delta u B and the states h_t (channels x N x
        chunk; steps past the map's end keep the state and add nothing)."""
        u = tl.load(x_ptr + at_pixel, mask=mask, other=0.0).to(tl.float32)
        raw, step, decay = _route_step(proj_ptr, w_ptr, bias, A, row, route, d, row_ok, t_ok,
                                       dim, rank, HAS_BIAS, BLOCK_D, CHUNK)
        Bt = tl.load(proj_ptr + row[None, :] + rank + n[:, None], mask=bc_mask,
                     other=0.0).to(tl.float32)
        Ct = tl.load(proj_ptr + row[None, :] + rank + state + n[:, None], mask=bc_mask,
                     other=0.0).to(tl.float32)
        valid = t_ok[None, None, :]
        decay = tl.where(valid, decay, 1.0)
        inflow = tl.where(valid, (step * u)[:, None, :] * Bt[None, :, :], 0.0)
        a_run, x_run = tl.associative_scan((decay, inflow), 2, pair_combine)
        return u, raw, step, Bt, Ct, inflow, x_run + a_run * h0[:, :, None]

    @triton.jit
    def _route_parameters(A_ptr, bias_ptr, D_ptr, channel, n, row_ok, n_ok, state,
                          HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
        """A, delta's bias and D of a route's block of channels (``channel``: their rows)."""
        A = tl.load(A_ptr + channel[:, None] * state + n[None, :],
                    mask=row_ok[:, None] & n_ok[None, :], other=0.0)
        bias = tl.load(bias_ptr + channel, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + channel, mask=row_ok, other=0.0) if HAS_D else 0.0
        return A, bias, skip

    @triton.jit
    def _cross_selective_scan_fwd(x_ptr, proj_ptr, w_ptr, A_ptr, D_ptr, bias_ptr, pixels_ptr,
                                  y_ptr, states_ptr, dim, length, state, rank, chunks,
                                  ROUTES: tl.constexpr, HAS_D: tl.constexpr,
                                  HAS_BIAS: tl.constexpr, NP: tl.constexpr, CHUNK: tl.constexpr,
                                  BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        width = rank + 2 * state  # one projection row: delta's low rank, B, C
        last = tl.arange(0, CHUNK)[None, None, :] == CHUNK - 1
        for route in range(ROUTES):
            channel = route * dim + d
            A, bias, skip = _route_parameters(A_ptr, bias_ptr, D_ptr, channel, n, row_ok, n_ok,
                                              state, HAS_D, HAS_BIAS)
            state_rows = (((b * ROUTES + route) * dim + d[:, None]) * NP + n[None, :]) * chunks
            h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
            for c in range(chunks):
                tl.store(states_ptr + state_rows + c, h, mask=row_ok[:, None])
                t = c * CHUNK + tl.arange(0, CHUNK)
                t_ok = t < length
                p = tl.load(pixels_ptr + route * length + t, mask=t_ok, other=0)
                mask = row_ok[:, None] & t_ok[None, :]
                bc_mask = n_ok[:, None] & t_ok[None, :]
                at_pixel = (b * length + p)[None, :] * dim + d[:, None]
                row = ((b * length + p) * ROUTES + route) * width
                u, _, step, Bt, Ct, _, hs = _scan_chunk(
                    x_ptr, proj_ptr, w_ptr, bias, A, h, at_pixel, row, route, d, n, row_ok,
                    t_ok, mask, bc_mask, dim, rank, state, HAS_BIAS, BLOCK_D, CHUNK)
                y = tl.sum(hs * Ct[None, :, :], axis=1)
                if HAS_D:
                    y += skip[:, None] * u
                y += tl.load(y_ptr + at_pixel, mask=mask & (route > 0), other=0.0)
                tl.store(y_ptr + at_pixel, y, mask=mask)
                h = tl.sum(tl.where(last, hs, 0.0), axis=2)
            tl.debug_barrier()  # the next route reads outputs other threads wrote

    @triton.jit
    def _cross_selective_scan_bwd(x_ptr, proj_ptr, w_ptr, A_ptr, D_ptr, bias_ptr, pixels_ptr,
                                  dy_ptr, states_ptr, dx_ptr, dproj_ptr, dw_ptr, dA_ptr, dD_ptr,
                                  dbias_ptr, batch, dim, length, state, rank, chunks,
                                  ROUTES: tl.constexpr, HAS_D: tl.constexpr,
                                  HAS_BIAS: tl.constexpr, NP: tl.constexpr, RP: tl.constexpr,
                                  CHUNK: tl.constexpr, BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        block = tl.program_id(1)
        d = block * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, NP)
        r_index = tl.arange(0, RP)
        row_ok = d < dim
        n_ok = n < state
        width = rank + 2 * state
        first = tl.arange(0, CHUNK)[None, None, :] == 0
        for route in range(ROUTES):
            channel = route * dim + d
            A, bias, skip = _route_parameters(A_ptr, bias_ptr, D_ptr, channel, n, row_ok, n_ok,
                                              state, HAS_D, HAS_BIAS)
            state_rows = (((b * ROUTES + route) * dim + d[:, None]) * NP + n[None, :]) * chunks
            carry = tl.zeros((BLOCK_D, NP), dtype=tl.float32)  # dh entering the next chunk
            dA_acc = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
            dw_acc = tl.zeros((BLOCK_D, RP), dtype=tl.float32)
            dD_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
            dbias_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
            for i in range(chunks):
                c = chunks - 1 - i
                t = c * CHUNK + tl.arange(0, CHUNK)
                t_ok = t < length
                p = tl.load(pixels_ptr + route * length + t, mask=t_ok, other=0)
                mask = row_ok[:, None] & t_ok[None, :]
                bc_mask = n_ok[:, None] & t_ok[None, :]
                valid = t_ok[None, None, :]
                at_pixel = (b * length + p)[None, :] * dim + d[:, None]
                row = ((b * length + p) * ROUTES + route) * width
                h0 = tl.load(states_ptr + state_rows + c, mask=row_ok[:, None], other=0.0)
                dy = tl.load(dy_ptr + at_pixel, mask=mask, other=0.0)
                u, raw, step, Bt, Ct, inflow, hs = _scan_chunk(
                    x_ptr, proj_ptr, w_ptr, bias, A, h0, at_pixel, row, route, d, n, row_ok,
                    t_ok, mask, bc_mask, dim, rank, state, HAS_BIAS, BLOCK_D, CHUNK)
                decayed_prev = hs - inflow  # a_t h_{t-1}
                # dh_t = C_t dy_t + a_{t+1} dh_{t+1}: the next step's decay, from the chunk's end.
                t_next = t + 1
                next_ok = t_next < length
                p_next = tl.load(pixels_ptr + route * length + t_next, mask=next_ok, other=0)
                row_next = ((b * length + p_next) * ROUTES + route) * width
                _, _, decay_next = _route_step(proj_ptr, w_ptr, bias, A, row_next, route, d,
                                               row_ok, next_ok, dim, rank, HAS_BIAS, BLOCK_D,
                                               CHUNK)
                decay_next = tl.where(next_ok[None, None, :], decay_next, 0.0)
                grad_h = tl.where(valid, Ct[None, :, :] * dy[:, None, :], 0.0)
                a_rev, g_rev = tl.associative_scan((decay_next, grad_h), 2, pair_combine,
                                                   reverse=True)
                dh = tl.where(valid, g_rev + a_rev * carry[:, :, None], 0.0)
                carry = tl.sum(tl.where(first, dh, 0.0), axis=2)

                du = tl.sum(dh * Bt[None, :, :], axis=1) * step
                if HAS_D:
                    du += dy * skip[:, None]
                    dD_acc += tl.sum(dy * u, axis=1)
                du += tl.load(dx_ptr + at_pixel, mask=mask & (route > 0), other=0.0)
                tl.store(dx_ptr + at_pixel, du, mask=mask)
                dstep = tl.sum(dh * (u[:, None, :] * Bt[None, :, :] +
                                     decayed_prev * A[:, :, None]), axis=1)
                dA_acc += tl.sum(dh * decayed_prev * step[:, None, :], axis=2)
                dstep = dstep * tl.where(raw > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-raw)))
                dstep = tl.where(mask, dstep, 0.0)
                dbias_acc += tl.sum(dstep, axis=1)
                # This block's share of the projections' gradients, summed over its channels.
                part = ((block * batch + b) * length + p) * ROUTES + route
                for r in range(rank):
                    w = tl.load(w_ptr + (route * dim + d) * rank + r, mask=row_ok,
                                other=0.0).to(tl.float32)
                    low = tl.load(proj_ptr + row + r, mask=t_ok, other=0.0).to(tl.float32)
                    dw_acc += tl.where(r_index[None, :] == r,
                                       tl.sum(dstep * low[None, :], axis=1)[:, None], 0.0)
                    tl.store(dproj_ptr + part * width + r, tl.sum(dstep * w[:, None], axis=0),
                             mask=t_ok)
                dB = tl.sum(dh * (step * u)[:, None, :], axis=0)
                dC = tl.sum(hs * dy[:, None, :], axis=0)
                tl.store(dproj_ptr + part[None, :] * width + rank + n[:, None], dB, mask=bc_mask)
                tl.store(dproj_ptr + part[None, :] * width + rank + state + n[:, None], dC,
                         mask=bc_mask)
            per_image = b * ROUTES * dim + channel  # this image's share, summed afterwards
            tl.store(dA_ptr + per_image[:, None] * state + n[None, :], dA_acc,
                     mask=row_ok[:, None] & n_ok[None, :])
            tl.store(dw_ptr + per_image[:, None] * rank + r_index[None, :], dw_acc,
                     mask=row_ok[:, None] & (r_index[None, :] < rank))
            if HAS_D:
                tl.store(dD_ptr + per_image, dD_acc, mask=row_ok)
            if HAS_BIAS:
                tl.store(dbias_ptr + per_image, dbias_acc, mask=row_ok)
            tl.debug_barrier()  # the next route adds to map gradients other threads wrote


def _float32(t):
    return t.float().contiguous() if t is not None else None


def _layout(x, A, pixels):
    """(routes, state_pad, block_d, chunk, chunks) of a call."""
    state_pad, block_d, chunk = tiling(x.shape[3], A.shape[1])
    return pixels.shape[0], state_pad, block_d, chunk, num_chunks(pixels.shape[1], chunk)


@torch.library.custom_op('vmamba::cross_selective_scan_triton', mutates_args=())
def cross_selective_scan_op(x: Tensor, projected: Tensor, dt_weight: Tensor, A: Tensor,
                            D: Optional[Tensor], delta_bias: Optional[Tensor],
                            pixels: Tensor) -> Tuple[Tensor, Tensor]:
    """``pixel_major_low_rank_reference`` in one Triton pass: y (B, H, W, C) float32, delta with
    softplus, and the states entering each chunk (B, routes, C, N padded, chunks) for the backward.

    x: (B, H, W, C); projected: (B, L, routes, R + 2N), each pixel's route projections (delta's
    low rank, B, C) in pixel order; dt_weight: (routes, C, R); A: (routes * C, N); D, delta_bias:
    (routes * C,) or None; pixels: the (routes, L) route table.
    """
    batch, height, width, dim = x.shape
    routes, state_pad, block_d, chunk, chunks = _layout(x, A, pixels)
    length, state, rank = height * width, A.shape[1], dt_weight.shape[2]
    x, projected, dt_weight, pixels = (t.contiguous() for t in (x, projected, dt_weight, pixels))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    y = torch.empty(batch, height, width, dim, device=x.device, dtype=torch.float32)
    states = torch.empty(batch, routes, dim, state_pad, chunks, device=x.device,
                         dtype=torch.float32)
    # An absent D or bias is never read (HAS_D / HAS_BIAS): any float32 pointer stands in.
    _cross_selective_scan_fwd[(batch, triton.cdiv(dim, block_d))](
        x, projected, dt_weight, A, D if D is not None else A,
        delta_bias if delta_bias is not None else A, pixels, y, states, dim, length, state,
        rank, chunks, ROUTES=routes, HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        NP=state_pad, CHUNK=chunk, BLOCK_D=block_d, num_warps=NUM_WARPS)
    return y, states


@cross_selective_scan_op.register_fake
def _(x, projected, dt_weight, A, D, delta_bias, pixels):
    routes, state_pad, _, _, chunks = _layout(x, A, pixels)
    return (x.new_empty(x.shape, dtype=torch.float32),
            x.new_empty(x.shape[0], routes, x.shape[3], state_pad, chunks, dtype=torch.float32))


@torch.library.custom_op('vmamba::cross_selective_scan_triton_backward', mutates_args=())
def cross_selective_scan_backward_op(x: Tensor, projected: Tensor, dt_weight: Tensor, A: Tensor,
                                     D: Optional[Tensor], delta_bias: Optional[Tensor],
                                     pixels: Tensor, states: Tensor, grad_y: Tensor
                                     ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dprojected, ddt_weight, dA, dD, ddelta_bias) from the forward's states: dx,
    dprojected and ddt_weight in their input's dtype, the rest float32; dD and ddelta_bias are
    zeros when D or the bias is absent (an operator cannot return None)."""
    batch, height, width, dim = x.shape
    routes, state_pad, block_d, chunk, chunks = _layout(x, A, pixels)
    length, state, rank = height * width, A.shape[1], dt_weight.shape[2]
    num_blocks = triton.cdiv(dim, block_d)
    x, projected, dt_weight, pixels = (t.contiguous() for t in (x, projected, dt_weight, pixels))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    float32 = dict(device=x.device, dtype=torch.float32)
    dx = torch.empty(batch, height, width, dim, **float32)
    dproj = torch.empty(num_blocks, *projected.shape, **float32)
    dw = torch.empty(batch, *dt_weight.shape, **float32)
    dA = torch.empty(batch, *A.shape, **float32)
    dD = torch.zeros(batch, routes * dim, **float32)
    dbias = torch.zeros(batch, routes * dim, **float32)
    _cross_selective_scan_bwd[(batch, num_blocks)](
        x, projected, dt_weight, A, D if D is not None else A,
        delta_bias if delta_bias is not None else A, pixels, grad_y.float().contiguous(),
        states.contiguous(), dx, dproj, dw, dA, dD, dbias, batch, dim, length, state, rank,
        chunks, ROUTES=routes, HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        NP=state_pad, RP=max(1, 1 << max(0, rank - 1).bit_length()), CHUNK=chunk,
        BLOCK_D=block_d, num_warps=NUM_WARPS)
    return (dx.to(x.dtype), dproj.sum(0).to(projected.dtype), dw.sum(0).to(dt_weight.dtype),
            dA.sum(0), dD.sum(0), dbias.sum(0))


@cross_selective_scan_backward_op.register_fake
def _(x, projected, dt_weight, A, D, delta_bias, pixels, states, grad_y):
    dim = A.shape[0]

    def like(t):
        return torch.empty_like(t, memory_format=torch.contiguous_format)

    return (like(x), like(projected), like(dt_weight), A.new_empty(A.shape, dtype=torch.float32),
            A.new_empty(dim, dtype=torch.float32), A.new_empty(dim, dtype=torch.float32))


def _setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(*inputs, output[1])


def _backward(ctx, grad_y, grad_states):
    x, projected, dt_weight, A, D, delta_bias, pixels, states = ctx.saved_tensors
    dx, dproj, dw, dA, dD, dbias = cross_selective_scan_backward_op(
        x, projected, dt_weight, A, D, delta_bias, pixels, states, grad_y)
    return (dx, dproj, dw, dA, dD if D is not None else None,
            dbias if delta_bias is not None else None, None)


cross_selective_scan_op.register_autograd(_backward, setup_context=_setup)


def cross_selective_scan_triton(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                                channel_first):
    """The ``triton`` backend's cross_selective_scan, for inference and training alike."""
    pixel_major, projected = pixel_major_projections(x, x_proj_weight)
    height, width = x.shape[2:]
    y, _ = cross_selective_scan_op(pixel_major, projected, dt_projs_weight, A, D, delta_bias,
                                   route_table(order, height, width, x.device))
    return y.permute(0, 3, 1, 2) if channel_first else y
