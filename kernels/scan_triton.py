"""Selective scan in Triton (CUDA GPUs; on the CPU under TRITON_INTERPRET=1 for tests).

One program owns a block of channels of one batch element and walks L in chunks. Inside a chunk
the recurrence h_t = a_t h_{t-1} + x_t is an associative scan over (a, x) pairs, held in
registers as (channels, N, chunk) tiles; the state is carried between chunks. Nothing of shape
(batch, dim, N, L) reaches memory: the forward stores only the chunk-start states
(batch, dim, N, L / chunk), from which the backward recomputes each chunk while it walks the
chunks in reverse with the adjoint recurrence dh_t = C_t dy_t + a_{t+1} dh_{t+1}.
Gradients of B and C are summed over the channels of a block in the kernel and over blocks by a
plain reduction afterwards: no atomics, so the backward is deterministic.
"""
import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the backend reports itself unavailable
    triton = None


def unavailable_reason():
    if triton is None:
        return 'Triton is not installed (pip install triton)'
    if not torch.cuda.is_available() and os.environ.get('TRITON_INTERPRET') != '1':
        return 'no CUDA device (set TRITON_INTERPRET=1 to run the Triton kernels on the CPU)'
    return None


# Elements per (channels x N x chunk) register tile: the forward keeps a few such tensors alive,
# the backward about three times as many, so it gets smaller tiles to avoid spilling (H100,
# VMamba-T stage 1, batch 128: fwd+bwd 24 ms with 4096, 7.0 with 1024, 6.6 with 512, 6.4 with
# 256; 512 keeps the per-block dB/dC partial sums at a quarter of the channels).
FORWARD_TILE = 4096
BACKWARD_TILE = 512


def _chunk_config(state):
    """(N padded to a power of two, tokens per chunk); shared by forward and backward."""
    state_pad = max(1, triton.next_power_of_2(state))
    return state_pad, min(128, max(16, FORWARD_TILE // (8 * state_pad)))


def _block_channels(per_group, state_pad, chunk, tile):
    """Channels per program: a power of two that divides a group and fits the tile."""
    block_d = 1
    while block_d < 32 and per_group % (block_d * 2) == 0 and \
            block_d * 2 * state_pad * chunk <= tile:
        block_d *= 2
    return block_d


if triton is not None:

    @triton.jit
    def _pair_combine(a1, x1, a2, x2):
        return a1 * a2, a2 * x1 + x2

    @triton.jit
    def _load_step(delta_ptr, bias, t, t_ok, rows, row_ok, A, SOFTPLUS: tl.constexpr,
                   HAS_BIAS: tl.constexpr):
        """delta (after bias and softplus) at positions t, and exp(delta * A)."""
        mask = row_ok[:, None] & t_ok[None, :]
        raw = tl.load(delta_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            raw = raw + bias[:, None]
        step = raw
        if SOFTPLUS:
            step = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(raw)))
        decay = tl.exp(step[:, None, :] * A[:, :, None])
        return raw, step, decay

    @triton.jit
    def _selective_scan_fwd(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
                            states_ptr, dim, length, groups, state, num_chunks, per_group,
                            HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                            SOFTPLUS: tl.constexpr, NP: tl.constexpr, CHUNK: tl.constexpr,
                            BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        g = (tl.program_id(1) * BLOCK_D) // per_group
        rows = (b * dim + d) * length
        A = tl.load(A_ptr + d[:, None] * state + n[None, :], mask=row_ok[:, None] & n_ok[None, :],
                    other=0.0)
        bias = tl.load(bias_ptr + d, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + d, mask=row_ok, other=0.0) if HAS_D else 0.0
        bc_rows = ((b * groups + g) * state + n) * length
        h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        for c in range(num_chunks):
            t = c * CHUNK + tl.arange(0, CHUNK)
            t_ok = t < length
            mask = row_ok[:, None] & t_ok[None, :]
            bc_mask = n_ok[:, None] & t_ok[None, :]
            # The state entering this chunk, for the backward's recomputation.
            tl.store(states_ptr + ((b * dim + d[:, None]) * NP + n[None, :]) * num_chunks + c, h,
                     mask=row_ok[:, None])
            u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            _, step, decay = _load_step(delta_ptr, bias, t, t_ok, rows, row_ok, A, SOFTPLUS,
                                        HAS_BIAS)
            Bt = tl.load(B_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask, other=0.0)
            Ct = tl.load(C_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask, other=0.0)
            x = (step * u)[:, None, :] * Bt.to(tl.float32)[None, :, :]
            valid = t_ok[None, None, :]
            decay = tl.where(valid, decay, 1.0)
            x = tl.where(valid, x, 0.0)
            a_run, x_run = tl.associative_scan((decay, x), 2, _pair_combine)
            hs = x_run + a_run * h[:, :, None]
            y = tl.sum(hs * Ct.to(tl.float32)[None, :, :], axis=1)
            if HAS_D:
                y += skip[:, None] * u
            tl.store(y_ptr + rows[:, None] + t[None, :], y, mask=mask)
            last = tl.arange(0, CHUNK)[None, None, :] == CHUNK - 1
            h = tl.sum(tl.where(last, hs, 0.0), axis=2)

    @triton.jit
    def _selective_scan_bwd(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dy_ptr,
                            states_ptr, du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr,
                            dbias_ptr, dim, length, groups, state, num_chunks, per_group,
                            num_dblocks, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                            SOFTPLUS: tl.constexpr, NP: tl.constexpr, CHUNK: tl.constexpr,
                            BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        block = tl.program_id(1)
        d = block * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        g = (block * BLOCK_D) // per_group
        rows = (b * dim + d) * length
        A = tl.load(A_ptr + d[:, None] * state + n[None, :], mask=row_ok[:, None] & n_ok[None, :],
                    other=0.0)
        bias = tl.load(bias_ptr + d, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + d, mask=row_ok, other=0.0) if HAS_D else 0.0
        bc_rows = ((b * groups + g) * state + n) * length
        part_rows = ((b * num_dblocks + block) * state + n) * length
        carry = tl.zeros((BLOCK_D, NP), dtype=tl.float32)  # dh at the next chunk's first step
        dA_acc = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        dD_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
        dbias_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
        first = tl.arange(0, CHUNK)[None, None, :] == 0
        for i in range(num_chunks):
            c = num_chunks - 1 - i
            t = c * CHUNK + tl.arange(0, CHUNK)
            t_ok = t < length
            mask = row_ok[:, None] & t_ok[None, :]
            bc_mask = n_ok[:, None] & t_ok[None, :]
            valid = t_ok[None, None, :]
            h0 = tl.load(states_ptr + ((b * dim + d[:, None]) * NP + n[None, :]) * num_chunks + c,
                         mask=row_ok[:, None], other=0.0)
            u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            raw, step, decay = _load_step(delta_ptr, bias, t, t_ok, rows, row_ok, A, SOFTPLUS,
                                          HAS_BIAS)
            Bt = tl.load(B_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                         other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                         other=0.0).to(tl.float32)
            # h_{t-1}: the same scan over the inputs shifted by one step (identity at the start).
            tp = t - 1
            tp_ok = (tp >= c * CHUNK) & (tp < length)
            u_p = tl.load(u_ptr + rows[:, None] + tp[None, :],
                          mask=row_ok[:, None] & tp_ok[None, :], other=0.0).to(tl.float32)
            _, step_p, decay_p = _load_step(delta_ptr, bias, tp, tp_ok, rows, row_ok, A,
                                            SOFTPLUS, HAS_BIAS)
            B_p = tl.load(B_ptr + bc_rows[:, None] + tp[None, :],
                          mask=n_ok[:, None] & tp_ok[None, :], other=0.0).to(tl.float32)
            valid_p = tp_ok[None, None, :]
            decay_p = tl.where(valid_p, decay_p, 1.0)
            x_p = tl.where(valid_p, (step_p * u_p)[:, None, :] * B_p[None, :, :], 0.0)
            a_run, x_run = tl.associative_scan((decay_p, x_p), 2, _pair_combine)
            h_prev = x_run + a_run * h0[:, :, None]
            # dh_t = C_t dy_t + a_{t+1} dh_{t+1}, scanned from the chunk's end.
            tn = t + 1
            tn_ok = tn < length
            _, _, decay_n = _load_step(delta_ptr, bias, tn, tn_ok, rows, row_ok, A, SOFTPLUS,
                                       HAS_BIAS)
            decay_n = tl.where(tn_ok[None, None, :], decay_n, 0.0)
            grad_h = tl.where(valid, Ct[None, :, :] * dy[:, None, :], 0.0)
            a_rev, g_rev = tl.associative_scan((decay_n, grad_h), 2, _pair_combine, reverse=True)
            dh = g_rev + a_rev * carry[:, :, None]
            dh = tl.where(valid, dh, 0.0)
            carry = tl.sum(tl.where(first, dh, 0.0), axis=2)
            hs = decay * h_prev + (step * u)[:, None, :] * Bt[None, :, :]
            du = tl.sum(dh * Bt[None, :, :], axis=1) * step
            if HAS_D:
                du += dy * skip[:, None]
                dD_acc += tl.sum(dy * u, axis=1)
            dstep = tl.sum(dh * (u[:, None, :] * Bt[None, :, :] +
                                 h_prev * decay * A[:, :, None]), axis=1)
            dA_acc += tl.sum(dh * h_prev * decay * step[:, None, :], axis=2)
            if SOFTPLUS:
                dstep = dstep * tl.where(raw > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-raw)))
            dstep = tl.where(mask, dstep, 0.0)
            dbias_acc += tl.sum(dstep, axis=1)
            tl.store(du_ptr + rows[:, None] + t[None, :], du, mask=mask)
            tl.store(ddelta_ptr + rows[:, None] + t[None, :], dstep, mask=mask)
            dB = tl.sum(dh * (step * u)[:, None, :], axis=0)
            dC = tl.sum(hs * dy[:, None, :], axis=0)
            tl.store(dB_ptr + part_rows[:, None] + t[None, :], dB, mask=bc_mask)
            tl.store(dC_ptr + part_rows[:, None] + t[None, :], dC, mask=bc_mask)
        tl.store(dA_ptr + (b * dim + d[:, None]) * state + n[None, :], dA_acc,
                 mask=row_ok[:, None] & n_ok[None, :])
        if HAS_D:
            tl.store(dD_ptr + b * dim + d, dD_acc, mask=row_ok)
        if HAS_BIAS:
            tl.store(dbias_ptr + b * dim + d, dbias_acc, mask=row_ok)


class _TritonSelectiveScan(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
        batch, dim, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        per_group = dim // groups
        state_pad, chunk = _chunk_config(state)
        block_d = _block_channels(per_group, state_pad, chunk, FORWARD_TILE)
        num_chunks = max(1, math.ceil(length / chunk))
        u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
        A = A.float().contiguous()
        D = D.float().contiguous() if D is not None else None
        delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
        y = torch.empty(batch, dim, length, device=u.device, dtype=torch.float32)
        states = torch.empty(batch, dim, state_pad, num_chunks, device=u.device,
                             dtype=torch.float32)
        grid = (batch, triton.cdiv(dim, block_d))
        _selective_scan_fwd[grid](u, delta, A, B, C, D if D is not None else A,
                                  delta_bias if delta_bias is not None else A, y, states, dim,
                                  length, groups, state, num_chunks, per_group,
                                  HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
                                  SOFTPLUS=bool(delta_softplus), NP=state_pad, CHUNK=chunk,
                                  BLOCK_D=block_d)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, states)
        ctx.config = (delta_softplus, state_pad, chunk, num_chunks, per_group)
        return y.to(out_dtype)

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
        delta_softplus, state_pad, chunk, num_chunks, per_group = ctx.config
        block_d = _block_channels(per_group, state_pad, chunk, BACKWARD_TILE)
        batch, dim, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        num_dblocks = triton.cdiv(dim, block_d)
        dy = dy.float().contiguous()
        du = torch.empty(batch, dim, length, device=u.device, dtype=torch.float32)
        ddelta = torch.empty_like(du)
        dA = torch.empty(batch, dim, state, device=u.device, dtype=torch.float32)
        dB_part = torch.empty(batch, num_dblocks, state, length, device=u.device,
                              dtype=torch.float32)
        dC_part = torch.empty_like(dB_part)
        dD = torch.empty(batch, dim, device=u.device, dtype=torch.float32)
        dbias = torch.empty_like(dD)
        _selective_scan_bwd[(batch, num_dblocks)](
            u, delta, A, B, C, D if D is not None else A,
            delta_bias if delta_bias is not None else A, dy, states, du, ddelta, dA, dB_part,
            dC_part, dD, dbias, dim, length, groups, state, num_chunks, per_group, num_dblocks,
            HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), NP=state_pad, CHUNK=chunk, BLOCK_D=block_d)
        # Blocks never straddle a group (block_d divides per_group): sum them group by group.
        blocks_per_group = num_dblocks // groups
        dB = dB_part.view(batch, groups, blocks_per_group, state, length).sum(2)
        dC = dC_part.view(batch, groups, blocks_per_group, state, length).sum(2)
        return (du.to(u.dtype), ddelta.to(delta.dtype), dA.sum(0), dB.to(B.dtype),
                dC.to(C.dtype), dD.sum(0) if D is not None else None,
                dbias.sum(0) if delta_bias is not None else None, None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                          out_dtype=torch.float32):
    return _TritonSelectiveScan.apply(u, delta, A, B, C, D, delta_bias, delta_softplus,
                                      out_dtype)


if triton is not None:

    @triton.jit
    def _route_pixels(t, route, ORDER: tl.constexpr, height, width, length):
        """Pixel (row-major index) at step t of a route; see cross_scan.py for the orders."""
        reversed_route = (ORDER != 1) & (route >= 2)
        t = tl.where(reversed_route, length - 1 - t, t)
        column_route = (ORDER == 0) & (route % 2 == 1)
        return tl.where(column_route, (t % height) * width + t // height, t)

    @triton.jit
    def _cross_scan_fwd(x_ptr, low_ptr, w_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
                        dim, height, width, state, rank, HAS_D: tl.constexpr,
                        HAS_BIAS: tl.constexpr, ORDER: tl.constexpr, NP: tl.constexpr,
                        CHUNK: tl.constexpr, BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        route = tl.program_id(2)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        length = height * width
        channel = route * dim + d
        A = tl.load(A_ptr + channel[:, None] * state + n[None, :],
                    mask=row_ok[:, None] & n_ok[None, :], other=0.0)
        bias = tl.load(bias_ptr + channel, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + channel, mask=row_ok, other=0.0) if HAS_D else 0.0
        low_rows = (b * 4 + route) * rank * length
        bc_rows = ((b * 4 + route) * state + n) * length
        h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        for c in range(tl.cdiv(length, CHUNK)):
            t = c * CHUNK + tl.arange(0, CHUNK)
            t_ok = t < length
            p = _route_pixels(t, route, ORDER, height, width, length)
            mask = row_ok[:, None] & t_ok[None, :]
            u = tl.load(x_ptr + (b * dim + d[:, None]) * length + p[None, :], mask=mask,
                        other=0.0).to(tl.float32)
            raw = tl.zeros((BLOCK_D, CHUNK), dtype=tl.float32)
            for r in range(rank):
                w = tl.load(w_ptr + (route * dim + d) * rank + r, mask=row_ok, other=0.0)
                lo = tl.load(low_ptr + low_rows + r * length + p, mask=t_ok, other=0.0)
                raw += w.to(tl.float32)[:, None] * lo.to(tl.float32)[None, :]
            if HAS_BIAS:
                raw += bias[:, None]
            step = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(raw)))
            decay = tl.exp(step[:, None, :] * A[:, :, None])
            bc_mask = n_ok[:, None] & t_ok[None, :]
            Bt = tl.load(B_ptr + bc_rows[:, None] + p[None, :], mask=bc_mask,
                         other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc_rows[:, None] + p[None, :], mask=bc_mask,
                         other=0.0).to(tl.float32)
            valid = t_ok[None, None, :]
            decay = tl.where(valid, decay, 1.0)
            x = tl.where(valid, (step * u)[:, None, :] * Bt[None, :, :], 0.0)
            a_run, x_run = tl.associative_scan((decay, x), 2, _pair_combine)
            hs = x_run + a_run * h[:, :, None]
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += skip[:, None] * u
            out_rows = ((b * 4 + route) * dim + d) * length
            tl.store(y_ptr + out_rows[:, None] + p[None, :], y, mask=mask)
            last = tl.arange(0, CHUNK)[None, None, :] == CHUNK - 1
            h = tl.sum(tl.where(last, hs, 0.0), axis=2)


_ORDER_CODES = {'cross': 0, 'unidirectional': 1, 'bidirectional': 2}


def cross_scan_forward_triton(x, dt_low, dt_weight, A, B, C, D, delta_bias, order):
    """SS2D's four routes scanned in place on the GPU, for inference (no autograd).

    Each route's output is written back in pixel order (B, 4, C, L) and the routes are summed by
    one reduction: no route copies of the input, no (B, 4, C, L) delta, no flips or transposes.
    """
    batch, dim, height, width = x.shape
    length = height * width
    state, rank = A.shape[1], dt_low.shape[2]
    state_pad, chunk = _chunk_config(state)
    block_d = _block_channels(dim, state_pad, chunk, FORWARD_TILE)
    x, dt_low, B, C = (t.contiguous() for t in (x, dt_low, B, C))
    A = A.float().contiguous()
    y = torch.empty(batch, 4, dim, length, device=x.device, dtype=torch.float32)
    _cross_scan_fwd[(batch, triton.cdiv(dim, block_d), 4)](
        x, dt_low, dt_weight.contiguous(), A, B, C,
        D.float().contiguous() if D is not None else A,
        delta_bias.float().contiguous() if delta_bias is not None else A, y, dim, height, width,
        state, rank, HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        ORDER=_ORDER_CODES[order], NP=state_pad, CHUNK=chunk, BLOCK_D=block_d)
    return y.sum(1)


if triton is not None:

    @triton.jit
    def _route_steps(q, route, ORDER: tl.constexpr, height, width, length):
        """Inverse of _route_pixels: the step at which a route visits pixel q."""
        column_route = (ORDER == 0) & (route % 2 == 1)
        t = tl.where(column_route, (q % width) * height + q // width, q)
        reversed_route = (ORDER != 1) & (route >= 2)
        return tl.where(reversed_route, length - 1 - t, t)

    @triton.jit
    def _cross_scan_copy(x_ptr, routes_ptr, channels, height, width,
                         CHANNEL_FIRST: tl.constexpr, ORDER: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
        b = tl.program_id(0)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        t = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)
        length = height * width
        mask = (c < channels)[:, None] & (t < length)[None, :]
        for route in tl.static_range(4):
            p = _route_pixels(t, route, ORDER, height, width, length)
            if CHANNEL_FIRST:
                src = x_ptr + (b * channels + c[:, None]) * length + p[None, :]
            else:
                src = x_ptr + (b * length + p[None, :]) * channels + c[:, None]
            value = tl.load(src, mask=mask)
            tl.store(routes_ptr + ((b * 4 + route) * channels + c[:, None]) * length + t[None, :],
                     value, mask=mask)

    @triton.jit
    def _cross_merge_sum(routes_ptr, out_ptr, channels, height, width,
                         CHANNEL_FIRST: tl.constexpr, ORDER: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
        b = tl.program_id(0)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        q = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)
        length = height * width
        mask = (c < channels)[:, None] & (q < length)[None, :]
        total = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
        for route in tl.static_range(4):
            t = _route_steps(q, route, ORDER, height, width, length)
            total += tl.load(routes_ptr + ((b * 4 + route) * channels + c[:, None]) * length +
                             t[None, :], mask=mask).to(tl.float32)
        if CHANNEL_FIRST:
            dst = out_ptr + (b * channels + c[:, None]) * length + q[None, :]
        else:
            dst = out_ptr + (b * length + q[None, :]) * channels + c[:, None]
        tl.store(dst, total.to(out_ptr.dtype.element_ty), mask=mask)


def _copy_grid(batch, channels, length, block_c=32, block_t=64):
    return (batch, triton.cdiv(channels, block_c), triton.cdiv(length, block_t))


def cross_scan_triton(x, order, channel_first):
    """Routes (B, 4, C, H*W) of a map, in one pass (see cross_scan.cross_scan)."""
    x = x.contiguous()
    batch = x.shape[0]
    channels, height, width = (x.shape[1:] if channel_first else
                               (x.shape[3], x.shape[1], x.shape[2]))
    routes = x.new_empty(batch, 4, channels, height * width)
    _cross_scan_copy[_copy_grid(batch, channels, height * width)](
        x, routes, channels, height, width, CHANNEL_FIRST=channel_first,
        ORDER=_ORDER_CODES[order], BLOCK_C=32, BLOCK_T=64)
    return routes


def cross_merge_triton(routes, height, width, order, channel_first):
    """The four routes summed back in place, in one pass (see cross_scan.cross_merge)."""
    routes = routes.contiguous()
    batch, _, channels, length = routes.shape
    shape = (batch, channels, height, width) if channel_first else (batch, height, width,
                                                                    channels)
    out = routes.new_empty(shape)
    _cross_merge_sum[_copy_grid(batch, channels, length)](
        routes, out, channels, height, width, CHANNEL_FIRST=channel_first,
        ORDER=_ORDER_CODES[order], BLOCK_C=32, BLOCK_T=64)
    return out
