"""Selective scan in Triton (CUDA GPUs; on the CPU under TRITON_INTERPRET=1 for tests).

One program owns a block of channels of one batch element and walks L in chunks. Inside a chunk
the recurrence h_t = a_t h_{t-1} + x_t is an associative scan over (a, x) pairs, held in
registers as (channels, N, chunk) tiles; the state is carried between chunks. Nothing of shape
(batch, dim, N, L) reaches memory: the forward stores only the chunk-start states
(batch, dim, N, L / chunk), from which the backward recomputes each chunk while it walks the
chunks in reverse with the adjoint recurrence dh_t = C_t dy_t + a_{t+1} dh_{t+1}.
Gradients of B and C are summed over the channels of a block in the kernel and over blocks by a
plain reduction afterwards: no atomics, so the backward is deterministic.

Both kernels are ``torch.library`` operators: ``vmamba::selective_scan_triton`` returns y and the
chunk-start states, ``vmamba::selective_scan_triton_backward`` the seven gradients; the forward's
registered autograd calls the backward. With their fake implementations they stay whole in
``torch.compile`` graphs and ``torch.export`` programs.

Plain ``custom_op``s rather than ``triton_op`` + ``wrap_triton``: the same form as the C++ and
CUDA operators, one opaque node per kernel in exported graphs (what ONNX export and a FLOP
counter attach to), explicit fake implementations rather than ones traced through the launch
code, and the same behaviour under TRITON_INTERPRET=1 on CPU tensors.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.scan_operators import (backward_fake, gradient_buffers, reduce_gradients,
                                     register_saved_state_autograd)
from ..common.triton_common import (BACKWARD_TILE, FORWARD_TILE, block_channels, chunk_config,
                                    load_step, num_chunks, pair_combine, tl, triton)

if triton is not None:

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
            _, step, decay = load_step(delta_ptr, bias, t, t_ok, rows, row_ok, A, SOFTPLUS,
                                       HAS_BIAS)
            Bt = tl.load(B_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask, other=0.0)
            Ct = tl.load(C_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask, other=0.0)
            x = (step * u)[:, None, :] * Bt.to(tl.float32)[None, :, :]
            valid = t_ok[None, None, :]
            decay = tl.where(valid, decay, 1.0)
            x = tl.where(valid, x, 0.0)
            a_run, x_run = tl.associative_scan((decay, x), 2, pair_combine)
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
            raw, step, decay = load_step(delta_ptr, bias, t, t_ok, rows, row_ok, A, SOFTPLUS,
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
            _, step_p, decay_p = load_step(delta_ptr, bias, tp, tp_ok, rows, row_ok, A,
                                           SOFTPLUS, HAS_BIAS)
            B_p = tl.load(B_ptr + bc_rows[:, None] + tp[None, :],
                          mask=n_ok[:, None] & tp_ok[None, :], other=0.0).to(tl.float32)
            valid_p = tp_ok[None, None, :]
            decay_p = tl.where(valid_p, decay_p, 1.0)
            x_p = tl.where(valid_p, (step_p * u_p)[:, None, :] * B_p[None, :, :], 0.0)
            a_run, x_run = tl.associative_scan((decay_p, x_p), 2, pair_combine)
            h_prev = x_run + a_run * h0[:, :, None]
            # dh_t = C_t dy_t + a_{t+1} dh_{t+1}, scanned from the chunk's end.
            tn = t + 1
            tn_ok = tn < length
            _, _, decay_n = load_step(delta_ptr, bias, tn, tn_ok, rows, row_ok, A, SOFTPLUS,
                                      HAS_BIAS)
            decay_n = tl.where(tn_ok[None, None, :], decay_n, 0.0)
            grad_h = tl.where(valid, Ct[None, :, :] * dy[:, None, :], 0.0)
            a_rev, g_rev = tl.associative_scan((decay_n, grad_h), 2, pair_combine, reverse=True)
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


def _forward_layout(u, A, B):
    """(state_pad, chunk, chunks, per_group): how the forward tiles a scan of these shapes."""
    length, groups = u.shape[2], B.shape[1]
    state_pad, chunk = chunk_config(A.shape[1])
    return state_pad, chunk, num_chunks(length, chunk), u.shape[1] // groups


def _float32(t):
    return t.float().contiguous() if t is not None else None


@torch.library.custom_op('vmamba::selective_scan_triton', mutates_args=())
def selective_scan_triton_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                  D: Optional[Tensor], delta_bias: Optional[Tensor],
                                  delta_softplus: bool) -> Tuple[Tensor, Tensor]:
    """The selective scan (B, C as (batch, G, N, L)): float32 y (batch, dim, L) and the states
    entering each chunk (batch, dim, N padded to a power of two, chunks), which the backward
    reads."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    state_pad, chunk, chunks, per_group = _forward_layout(u, A, B)
    block_d = block_channels(per_group, state_pad, chunk, FORWARD_TILE)
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    y = torch.empty(batch, dim, length, device=u.device, dtype=torch.float32)
    states = torch.empty(batch, dim, state_pad, chunks, device=u.device, dtype=torch.float32)
    # An absent D or bias is never read (HAS_D / HAS_BIAS): any float32 pointer stands in.
    _selective_scan_fwd[(batch, triton.cdiv(dim, block_d))](
        u, delta, A, B, C, D if D is not None else A, delta_bias if delta_bias is not None else A,
        y, states, dim, length, groups, state, chunks, per_group, HAS_D=D is not None,
        HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus, NP=state_pad, CHUNK=chunk,
        BLOCK_D=block_d)
    return y, states


@selective_scan_triton_forward.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    batch, dim, length = u.shape
    state_pad, _, chunks, _ = _forward_layout(u, A, B)
    return (u.new_empty(batch, dim, length, dtype=torch.float32),
            u.new_empty(batch, dim, state_pad, chunks, dtype=torch.float32))


@torch.library.custom_op('vmamba::selective_scan_triton_backward', mutates_args=())
def selective_scan_triton_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                   D: Optional[Tensor], delta_bias: Optional[Tensor],
                                   states: Tensor, grad_y: Tensor, delta_softplus: bool
                                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                              Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias) from the forward's states; du, ddelta, dB, dC
    in their input's dtype, the rest float32. dD and ddelta_bias are zeros when D or the bias is
    absent (an operator cannot return None)."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    state_pad, chunk, chunks, per_group = _forward_layout(u, A, B)
    block_d = block_channels(per_group, state_pad, chunk, BACKWARD_TILE)
    num_dblocks = triton.cdiv(dim, block_d)
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    grad_y = grad_y.float().contiguous()
    grads = gradient_buffers(u, state, num_dblocks)
    _selective_scan_bwd[(batch, num_dblocks)](
        u, delta, A, B, C, D if D is not None else A, delta_bias if delta_bias is not None else A,
        grad_y, states.contiguous(), *grads.values(), dim, length, groups, state, chunks,
        per_group, num_dblocks, HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, NP=state_pad, CHUNK=chunk, BLOCK_D=block_d)
    return reduce_gradients(grads, u, delta, B, C)


@selective_scan_triton_backward.register_fake
def _(u, delta, A, B, C, D, delta_bias, states, grad_y, delta_softplus):
    return backward_fake(u, delta, A, B, C)


register_saved_state_autograd(selective_scan_triton_forward, selective_scan_triton_backward)


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                          out_dtype=torch.float32):
    """The ``triton`` backend's entry, called by ``selective_scan`` with checked inputs."""
    y, _ = selective_scan_triton_forward(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))
    return y.to(out_dtype)
