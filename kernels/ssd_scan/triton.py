"""SSD's forward and backward in Triton (CUDA GPUs; on the CPU under TRITON_INTERPRET=1 for tests).

One program owns one (batch, head) and a block of ``headdim``, and walks the sequence chunk by
chunk, carrying the state S (headdim block x N, float32) in registers. Per chunk of ``CHUNK``
steps, with a = dt' A and its running sum within the chunk:

- intra-chunk: ``(C B^T * decay) (dt' x)``, decay[i, j] = exp(a_cum[i] - a_cum[j]) for i >= j
  (an exponent <= 0 when A <= 0; above the diagonal the exponent is -inf, never evaluated large);
- inter-chunk: ``exp(a_cum) * (C S^T)``, from the state entering the chunk;
- the state leaving it: ``exp(a_total) S + (dt' x * exp(a_total - a_cum))^T B``.

So the chunk-state, state-passing and chunk-scan steps of the chunked form are one pass, and
nothing of size (L, L) or per-chunk states reaches memory. Every product is ``tl.dot`` in IEEE
float32 (no TF32); fp16/bf16 inputs are widened on load. The kernel's chunk is ``chunk_size``
rounded up to a power of two, at least 16 (``tl.dot``'s smallest tile) and at most 32 (larger
tiles spill registers): the result does not depend on the chunk. Steps past L load dt' = 0 (no
decay, no drive).

``vmamba::ssd_scan_triton`` returns (y, final_states) in float32. Its backward,
``vmamba::ssd_scan_triton_backward``, reruns the forward kernel to save the state entering each
chunk, then walks the chunks from the last with the state's gradient G (headdim block x N) in
registers. Per chunk, from the forward's three terms (intra-chunk, inter-chunk, the state
leaving):

- d(dt' x) = (C B^T * decay)^T dy + exp(a_total - a_cum) (B G^T); dx = dt' d(dt' x) + D dy;
- dC = (dy (dt' x)^T * decay) B + exp(a_cum) dy S_in, and dB alike with the roles swapped and
  (dt' x) G for the state leaving;
- the gradient by a_cum from the decay mask, the inter-chunk factor and the state leaving, summed
  back over later steps for a = dt' A, which gives ddt' (with x . d(dt' x)) and dA;
- G entering the chunk = exp(a_total) G + (exp(a_cum) dy)^T C, the initial state's gradient at
  the first chunk.

Sums over headdim blocks and a group's heads are per-program partials added afterwards in torch
(no atomics, so the result does not depend on scheduling); dt's softplus and bias, and D, are
differentiated there too.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.triton_common import tl, triton
from .reference import gradient_placeholders, prepare_dt

if triton is not None:

    @triton.jit
    def _program_tile(batch_head, block, heads, per_group, headdim, state, BLOCK_P: tl.constexpr,
                      BLOCK_N: tl.constexpr):
        """A program's (batch, head, group), its headdim block p and states n with their masks,
        and the offsets of its (p, n) tile of a (batch, heads, headdim, N) state."""
        b = batch_head // heads
        h = batch_head % heads
        p = block * BLOCK_P + tl.arange(0, BLOCK_P)
        n = tl.arange(0, BLOCK_N)
        p_ok = p < headdim
        n_ok = n < state
        state_offsets = ((b * heads + h) * headdim + p[:, None]) * state + n[None, :]
        return b, h, h // per_group, p, p_ok, n, n_ok, state_offsets, p_ok[:, None] & n_ok[None, :]

    @triton.jit
    def _load_chunk(x_ptr, dt_ptr, B_ptr, C_ptr, A, c, b, h, g, p, p_ok, n, n_ok, length, heads,
                    headdim, groups, state, CHUNK: tl.constexpr):
        """Chunk ``c``'s steps t (and mask), dt', the running and total sums of a = dt' A, the
        tokens' row offsets, x (CHUNK x headdim block) with its mask, and B, C (CHUNK x N) with
        theirs, all float32; steps past L load zeros."""
        t = c * CHUNK + tl.arange(0, CHUNK)
        t_ok = t < length
        step = tl.load(dt_ptr + (b * length + t) * heads + h, mask=t_ok, other=0.0)
        a_cum = tl.cumsum(step * A, 0)
        a_total = tl.sum(step * A, 0)
        token = (b * length + t[:, None]) * heads + h
        x_ok = t_ok[:, None] & p_ok[None, :]
        x = tl.load(x_ptr + token * headdim + p[None, :], mask=x_ok, other=0.0).to(tl.float32)
        group_row = ((b * length + t[:, None]) * groups + g) * state + n[None, :]
        bc_ok = t_ok[:, None] & n_ok[None, :]
        Bc = tl.load(B_ptr + group_row, mask=bc_ok, other=0.0).to(tl.float32)
        Cc = tl.load(C_ptr + group_row, mask=bc_ok, other=0.0).to(tl.float32)
        return t, t_ok, step, a_cum, a_total, token, x_ok, x, bc_ok, Bc, Cc

    @triton.jit
    def _load_D(D_ptr, h, p, p_ok, headdim, D_PER_CHANNEL: tl.constexpr):
        """The skip weight D of head h: per channel of the headdim block, or one scalar."""
        if D_PER_CHANNEL:
            D = tl.load(D_ptr + h * headdim + p, mask=p_ok, other=0.0)
        else:
            D = tl.load(D_ptr + h)
        return D

    @triton.jit
    def _times_D(v, D, D_PER_CHANNEL: tl.constexpr):
        """v (CHUNK x headdim block) times D along the channels."""
        if D_PER_CHANNEL:
            out = v * D[None, :]
        else:
            out = v * D
        return out

    @triton.jit
    def _ssd_scan_fwd(x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, init_ptr, y_ptr, final_ptr,
                      chunk_states_ptr, length, heads, headdim, groups, state, per_group,
                      num_chunks, HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr,
                      HAS_INIT: tl.constexpr, SAVE_STATES: tl.constexpr, CHUNK: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
        batch_head = tl.program_id(0)
        b, h, g, p, p_ok, n, n_ok, state_offsets, state_ok = _program_tile(
            batch_head, tl.program_id(1), heads, per_group, headdim, state, BLOCK_P, BLOCK_N)
        q = tl.arange(0, CHUNK)
        causal = q[:, None] >= q[None, :]
        A = tl.load(A_ptr + h)
        if HAS_INIT:
            S = tl.load(init_ptr + state_offsets, mask=state_ok, other=0.0).to(tl.float32)
        else:
            S = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
        if HAS_D:
            D = _load_D(D_ptr, h, p, p_ok, headdim, D_PER_CHANNEL)
        for c in range(num_chunks):
            if SAVE_STATES:
                chunk_offsets = ((batch_head * num_chunks + c) * headdim + p[:, None]) * state
                tl.store(chunk_states_ptr + chunk_offsets + n[None, :], S, mask=state_ok)
            t, t_ok, step, a_cum, a_total, token, x_ok, x, bc_ok, Bc, Cc = _load_chunk(
                x_ptr, dt_ptr, B_ptr, C_ptr, A, c, b, h, g, p, p_ok, n, n_ok, length, heads,
                headdim, groups, state, CHUNK)
            dtx = x * step[:, None]
            scores = tl.dot(Cc, tl.trans(Bc), input_precision='ieee')
            decay = tl.exp(tl.where(causal, a_cum[:, None] - a_cum[None, :], float('-inf')))
            y = tl.dot(scores * decay, dtx, input_precision='ieee')
            y += tl.exp(a_cum)[:, None] * tl.dot(Cc, tl.trans(S), input_precision='ieee')
            if HAS_D:
                y += _times_D(x, D, D_PER_CHANNEL)
            tl.store(y_ptr + token * headdim + p[None, :], y, mask=x_ok)
            to_end = tl.exp(a_total - a_cum)
            S = tl.exp(a_total) * S + tl.dot(tl.trans(dtx * to_end[:, None]), Bc,
                                             input_precision='ieee')
        tl.store(final_ptr + state_offsets, S, mask=state_ok)

    @triton.jit
    def _ssd_scan_bwd(x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, chunk_states_ptr, grad_y_ptr,
                      grad_final_ptr, dx_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dinit_ptr,
                      length, heads, headdim, groups, state, per_group, num_chunks, batch,
                      HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, CHUNK: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
        batch_head = tl.program_id(0)
        block = tl.program_id(1)
        b, h, g, p, p_ok, n, n_ok, state_offsets, state_ok = _program_tile(
            batch_head, block, heads, per_group, headdim, state, BLOCK_P, BLOCK_N)
        q = tl.arange(0, CHUNK)
        causal = q[:, None] >= q[None, :]
        A = tl.load(A_ptr + h)
        # G: the loss's gradient by the state leaving the chunk, walked back from the last one.
        G = tl.load(grad_final_ptr + state_offsets, mask=state_ok, other=0.0)
        if HAS_D:
            D = _load_D(D_ptr, h, p, p_ok, headdim, D_PER_CHANNEL)
        # A float32 scalar tensor from the start: a loop-carried value keeps its first type.
        dA = tl.sum(tl.zeros((CHUNK, ), dtype=tl.float32), 0)
        for k in range(num_chunks):
            c = num_chunks - 1 - k
            t, t_ok, step, a_cum, a_total, token, x_ok, x, bc_ok, Bc, Cc = _load_chunk(
                x_ptr, dt_ptr, B_ptr, C_ptr, A, c, b, h, g, p, p_ok, n, n_ok, length, heads,
                headdim, groups, state, CHUNK)
            dy = tl.load(grad_y_ptr + token * headdim + p[None, :], mask=x_ok, other=0.0)
            chunk_offsets = ((batch_head * num_chunks + c) * headdim + p[:, None]) * state
            S_in = tl.load(chunk_states_ptr + chunk_offsets + n[None, :], mask=state_ok,
                           other=0.0)
            dtx = x * step[:, None]
            scores = tl.dot(Cc, tl.trans(Bc), input_precision='ieee')
            decay = tl.exp(tl.where(causal, a_cum[:, None] - a_cum[None, :], float('-inf')))
            from_start = tl.exp(a_cum)
            to_end = tl.exp(a_total - a_cum)
            # y = (scores * decay) dtx + from_start * C S_in^T; S_out = exp(a_total) S_in +
            # (dtx * to_end)^T B. Each input's gradient below is the sum over these terms.
            G_B = tl.dot(Bc, tl.trans(G), input_precision='ieee')  # row j: G B_j
            d_dtx = (tl.dot(tl.trans(scores * decay), dy, input_precision='ieee')
                     + to_end[:, None] * G_B)
            d_scores = tl.dot(dy, tl.trans(dtx), input_precision='ieee') * decay
            dC = (tl.dot(d_scores, Bc, input_precision='ieee')
                  + from_start[:, None] * tl.dot(dy, S_in, input_precision='ieee'))
            dB = (tl.dot(tl.trans(d_scores), Cc, input_precision='ieee')
                  + to_end[:, None] * tl.dot(dtx, G, input_precision='ieee'))
            # The gradient by a_cum[i], then by a[t] = the sum of a_cum's over i >= t.
            by_decay = d_scores * scores
            y_inter = from_start[:, None] * tl.dot(Cc, tl.trans(S_in), input_precision='ieee')
            into_end = to_end * tl.sum(dtx * G_B, 1)
            d_cum = tl.sum(by_decay, 1) - tl.sum(by_decay, 0) + tl.sum(dy * y_inter, 1) - into_end
            by_total = tl.sum(into_end, 0) + tl.sum(tl.sum(G * S_in, 1), 0) * tl.exp(a_total)
            d_cum += tl.where(q == CHUNK - 1, by_total, 0.0)
            d_a = tl.sum(d_cum, 0) - tl.cumsum(d_cum, 0) + d_cum
            dx = d_dtx * step[:, None]
            if HAS_D:
                dx += _times_D(dy, D, D_PER_CHANNEL)
            tl.store(dx_ptr + token * headdim + p[None, :], dx, mask=x_ok)
            part = block * batch + b
            ddt = tl.sum(x * d_dtx, 1) + A * d_a
            tl.store(ddt_ptr + (part * length + t) * heads + h, ddt, mask=t_ok)
            head_row = ((part * length + t[:, None]) * heads + h) * state + n[None, :]
            tl.store(dB_ptr + head_row, dB, mask=bc_ok)
            tl.store(dC_ptr + head_row, dC, mask=bc_ok)
            dA += tl.sum(step * d_a, 0)
            G = tl.exp(a_total) * G + tl.dot(tl.trans(dy * from_start[:, None]), Cc,
                                             input_precision='ieee')
        tl.store(dA_ptr + (block * batch + b) * heads + h, dA)
        tl.store(dinit_ptr + state_offsets, G, mask=state_ok)


# Chunks of at most 32 steps on 8 warps: compiled for an H100 at ssd-tiny's headdim 16 and N 64
# (tests/kernels/test_cuda_build.py), the backward spilled 35 KB of registers per thread at 64
# steps on 4 warps and 16.5 KB on 8, and 644 bytes at 32 on 8; the forward spills nothing at 32.
MAX_KERNEL_CHUNK = 32
NUM_WARPS = 8


def kernel_chunk(chunk_size):
    """The kernel's chunk: ``chunk_size`` as a power of two, at least ``tl.dot``'s 16 and at
    most ``MAX_KERNEL_CHUNK`` (the result does not depend on it)."""
    return max(16, min(MAX_KERNEL_CHUNK, triton.next_power_of_2(chunk_size)))


class _Launch:
    """The kernels' tiling of one call: chunk, headdim and state blocks, and the grid."""

    def __init__(self, x, B, chunk_size):
        self.batch, self.length, self.heads, self.headdim = x.shape
        self.groups, self.state = B.shape[2], B.shape[3]
        self.chunk = kernel_chunk(chunk_size)
        self.num_chunks = triton.cdiv(self.length, self.chunk)
        self.block_p = max(16, min(64, triton.next_power_of_2(self.headdim)))
        self.block_n = max(16, triton.next_power_of_2(self.state))
        self.p_blocks = triton.cdiv(self.headdim, self.block_p)
        self.grid = (self.batch * self.heads, self.p_blocks)

    def sizes(self):
        """The size arguments that both kernels take, in their order."""
        return (self.length, self.heads, self.headdim, self.groups, self.state,
                self.heads // self.groups, self.num_chunks)


def _float32(t, stand_in):
    # An absent D or initial state is never read (HAS_D / HAS_INIT): any pointer stands in.
    return t.float().contiguous() if t is not None else stand_in


def _run_forward(x, step, A32, B, C, D, initial_states, launch, chunk_states=None):
    """(y, final_states) in float32; the state entering each chunk goes to ``chunk_states``
    (batch * heads, chunks, headdim, N) when given."""
    y = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    final = x.new_empty(launch.batch, launch.heads, launch.headdim, launch.state,
                        dtype=torch.float32)
    _ssd_scan_fwd[launch.grid](
        x, step, A32, B, C, _float32(D, A32), _float32(initial_states, A32), y, final,
        chunk_states if chunk_states is not None else A32, *launch.sizes(),
        HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2,
        HAS_INIT=initial_states is not None, SAVE_STATES=chunk_states is not None,
        CHUNK=launch.chunk, BLOCK_P=launch.block_p, BLOCK_N=launch.block_n, num_warps=NUM_WARPS)
    return y, final


@torch.library.custom_op('vmamba::ssd_scan_triton', mutates_args=())
def ssd_scan_triton_forward(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                            D: Optional[Tensor], dt_bias: Optional[Tensor],
                            initial_states: Optional[Tensor], chunk_size: int,
                            dt_softplus: bool) -> Tuple[Tensor, Tensor]:
    """(y, final_states) of ``vmamba_kernels.ssd_scan``, both float32."""
    step = prepare_dt(dt, dt_bias, dt_softplus).contiguous()
    x, B, C = (t.contiguous() for t in (x, B, C))
    return _run_forward(x, step, A.float().contiguous(), B, C, D, initial_states,
                        _Launch(x, B, chunk_size))


@ssd_scan_triton_forward.register_fake
def _(x, dt, A, B, C, D, dt_bias, initial_states, chunk_size, dt_softplus):
    batch, _, heads, headdim = x.shape
    return (x.new_empty(x.shape, dtype=torch.float32),
            x.new_empty(batch, heads, headdim, B.shape[3], dtype=torch.float32))


@torch.library.custom_op('vmamba::ssd_scan_triton_backward', mutates_args=())
def ssd_scan_triton_backward(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Optional[Tensor], dt_bias: Optional[Tensor],
                             initial_states: Optional[Tensor], grad_y: Tensor,
                             grad_final_states: Tensor, chunk_size: int, dt_softplus: bool
                             ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                        Tensor]:
    """(dx, ddt, dA, dB, dC, dD, ddt_bias, dinitial_states) of ``ssd_scan_triton``: dx, ddt, dB,
    dC in their input's dtype, the rest float32; dD (D's shape), ddt_bias and dinitial_states are
    zeros when their input is absent (an operator cannot return None).

    The forward kernel runs again to save the state entering each chunk; the backward kernel
    walks the chunks back from the last, carrying the state's gradient. Sums over headdim blocks
    and over a group's heads (dt, A, B, C) are per-program partials added here, so no atomics.
    """
    launch = _Launch(x, B, chunk_size)
    raw_dt = dt.float() if dt_bias is None else dt.float() + dt_bias.float()
    step = (F.softplus(raw_dt) if dt_softplus else raw_dt).contiguous()
    x32, B32, C32 = (t.contiguous() for t in (x, B, C))
    A32 = A.float().contiguous()
    chunk_states = x.new_empty(launch.batch * launch.heads, launch.num_chunks, launch.headdim,
                               launch.state, dtype=torch.float32)
    _run_forward(x32, step, A32, B32, C32, D, initial_states, launch, chunk_states)

    def partials(*size):
        return x.new_empty(launch.p_blocks, launch.batch, *size, dtype=torch.float32)

    dx = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    d_step = partials(launch.length, launch.heads)
    dA = partials(launch.heads)
    dB, dC = (partials(launch.length, launch.heads, launch.state) for _ in range(2))
    d_initial = x.new_empty(launch.batch, launch.heads, launch.headdim, launch.state,
                            dtype=torch.float32)
    _ssd_scan_bwd[launch.grid](
        x32, step, A32, B32, C32, _float32(D, A32), chunk_states, grad_y.float().contiguous(),
        grad_final_states.float().contiguous(), dx, d_step, dA, dB, dC, d_initial,
        *launch.sizes(), launch.batch, HAS_D=D is not None,
        D_PER_CHANNEL=D is not None and D.dim() == 2, CHUNK=launch.chunk,
        BLOCK_P=launch.block_p, BLOCK_N=launch.block_n, num_warps=NUM_WARPS)

    d_step = d_step.sum(0)
    d_raw = d_step * torch.sigmoid(raw_dt) if dt_softplus else d_step
    by_group = (launch.batch, launch.length, launch.groups, launch.heads // launch.groups,
                launch.state)
    dB, dC = (t.sum(0).reshape(by_group).sum(3) for t in (dB, dC))
    if D is None:
        dD = x.new_zeros(0, dtype=torch.float32)
    else:
        skip = grad_y.float() * x.float()
        dD = skip.sum((0, 1)) if D.dim() == 2 else skip.sum((0, 1, 3))
    return (dx.to(x.dtype), d_raw.to(dt.dtype), dA.sum((0, 1)), dB.to(B.dtype), dC.to(C.dtype),
            dD, d_raw.sum((0, 1)), d_initial)


@ssd_scan_triton_backward.register_fake
def _(x, dt, A, B, C, D, dt_bias, initial_states, grad_y, grad_final_states, chunk_size,
      dt_softplus):
    return gradient_placeholders(x, dt, A, B, C, D)


def _setup(ctx, inputs, output):
    x, dt, A, B, C, D, dt_bias, initial_states, chunk_size, dt_softplus = inputs
    ctx.options = (chunk_size, dt_softplus)
    ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, initial_states)


def _backward(ctx, grad_y, grad_final):
    x, dt, A, B, C, D, dt_bias, initial_states = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
    if grad_final is None:
        grad_final = torch.zeros(x.shape[0], x.shape[2], x.shape[3], B.shape[3],
                                 device=x.device, dtype=torch.float32)
    dx, ddt, dA, dB, dC, dD, dbias, dinitial = ssd_scan_triton_backward(
        x, dt, A, B, C, D, dt_bias, initial_states, grad_y, grad_final, *ctx.options)
    return (dx, ddt, dA, dB, dC, dD.to(D.dtype) if D is not None else None,
            dbias.to(dt_bias.dtype) if dt_bias is not None else None,
            dinitial.to(initial_states.dtype) if initial_states is not None else None, None, None)


ssd_scan_triton_forward.register_autograd(_backward, setup_context=_setup)


def ssd_scan_triton(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
                    initial_states=None, return_final_states=False, out_dtype=torch.float32):
    """The ``triton`` backend's entry, called by ``ssd_scan`` with checked inputs."""
    y, final = ssd_scan_triton_forward(x, dt, A, B, C, D, dt_bias, initial_states,
                                       int(chunk_size), bool(dt_softplus))
    y = y.to(out_dtype)
    return (y, final) if return_final_states else y
