"""SSD's forward in Triton (CUDA GPUs; on the CPU under TRITON_INTERPRET=1 for tests).

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
rounded up to a power of two, at least 16 (``tl.dot``'s smallest tile): the result does not
depend on the chunk. Steps past L load dt' = 0 (no decay, no drive).

``vmamba::ssd_scan_triton`` returns (y, final_states) in float32. Its registered backward is the
``torch`` backend's chunked form recomputed from the inputs and differentiated by
autograd (``torch_form_gradients``): correct on any device, not yet a Triton kernel.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.triton_common import tl, triton
from .reference import prepare_dt
from .torch import ssd_scan_chunked

if triton is not None:

    @triton.jit
    def _ssd_scan_fwd(x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, init_ptr, y_ptr, final_ptr,
                      length, heads, headdim, groups, state, per_group, num_chunks,
                      HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_INIT: tl.constexpr,
                      CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
        batch_head = tl.program_id(0)
        b = batch_head // heads
        h = batch_head % heads
        g = h // per_group
        p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        p_ok = p < headdim
        n = tl.arange(0, BLOCK_N)
        n_ok = n < state
        q = tl.arange(0, CHUNK)
        causal = q[:, None] >= q[None, :]
        A = tl.load(A_ptr + h)
        state_offsets = ((b * heads + h) * headdim + p[:, None]) * state + n[None, :]
        state_ok = p_ok[:, None] & n_ok[None, :]
        if HAS_INIT:
            S = tl.load(init_ptr + state_offsets, mask=state_ok, other=0.0).to(tl.float32)
        else:
            S = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
        if HAS_D:
            if D_PER_CHANNEL:
                D = tl.load(D_ptr + h * headdim + p, mask=p_ok, other=0.0)
            else:
                D = tl.load(D_ptr + h)
        for c in range(num_chunks):
            t = c * CHUNK + q
            t_ok = t < length
            step = tl.load(dt_ptr + (b * length + t) * heads + h, mask=t_ok, other=0.0)
            a = step * A
            a_cum = tl.cumsum(a, 0)
            a_total = tl.sum(a, 0)
            token = (b * length + t[:, None]) * heads + h
            x_ok = t_ok[:, None] & p_ok[None, :]
            x = tl.load(x_ptr + token * headdim + p[None, :], mask=x_ok, other=0.0).to(tl.float32)
            group_row = ((b * length + t[:, None]) * groups + g) * state + n[None, :]
            bc_ok = t_ok[:, None] & n_ok[None, :]
            Bc = tl.load(B_ptr + group_row, mask=bc_ok, other=0.0).to(tl.float32)
            Cc = tl.load(C_ptr + group_row, mask=bc_ok, other=0.0).to(tl.float32)
            dtx = x * step[:, None]
            scores = tl.dot(Cc, tl.trans(Bc), input_precision='ieee')
            decay = tl.exp(tl.where(causal, a_cum[:, None] - a_cum[None, :], float('-inf')))
            y = tl.dot(scores * decay, dtx, input_precision='ieee')
            y += tl.exp(a_cum)[:, None] * tl.dot(Cc, tl.trans(S), input_precision='ieee')
            if HAS_D:
                if D_PER_CHANNEL:
                    y += x * D[None, :]
                else:
                    y += x * D
            tl.store(y_ptr + token * headdim + p[None, :], y, mask=x_ok)
            to_end = tl.exp(a_total - a_cum)
            S = tl.exp(a_total) * S + tl.dot(tl.trans(dtx * to_end[:, None]), Bc,
                                             input_precision='ieee')
        tl.store(final_ptr + state_offsets, S, mask=state_ok)


def kernel_chunk(chunk_size):
    """The kernel's chunk: ``chunk_size`` as a power of two, at least ``tl.dot``'s 16."""
    return max(16, triton.next_power_of_2(chunk_size))


@torch.library.custom_op('vmamba::ssd_scan_triton', mutates_args=())
def ssd_scan_triton_forward(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                            D: Optional[Tensor], dt_bias: Optional[Tensor],
                            initial_states: Optional[Tensor], chunk_size: int,
                            dt_softplus: bool) -> Tuple[Tensor, Tensor]:
    """(y, final_states) of ``vmamba_kernels.ssd_scan``, both float32."""
    batch, length, heads, headdim = x.shape
    groups, state = B.shape[2], B.shape[3]
    step = prepare_dt(dt, dt_bias, dt_softplus).contiguous()
    x, B, C = (t.contiguous() for t in (x, B, C))
    y = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    final = torch.empty(batch, heads, headdim, state, device=x.device, dtype=torch.float32)
    chunk = kernel_chunk(chunk_size)
    block_p = max(16, min(64, triton.next_power_of_2(headdim)))
    block_n = max(16, triton.next_power_of_2(state))
    A32 = A.float().contiguous()
    # An absent D or initial state is never read (HAS_D / HAS_INIT): any pointer stands in.
    D32 = D.float().contiguous() if D is not None else A32
    init = initial_states.float().contiguous() if initial_states is not None else A32
    _ssd_scan_fwd[(batch * heads, triton.cdiv(headdim, block_p))](
        x, step, A32, B, C, D32, init, y, final, length, heads, headdim, groups, state,
        heads // groups, triton.cdiv(length, chunk), HAS_D=D is not None,
        D_PER_CHANNEL=D is not None and D.dim() == 2, HAS_INIT=initial_states is not None,
        CHUNK=chunk, BLOCK_P=block_p, BLOCK_N=block_n)
    return y, final


@ssd_scan_triton_forward.register_fake
def _(x, dt, A, B, C, D, dt_bias, initial_states, chunk_size, dt_softplus):
    batch, _, heads, headdim = x.shape
    return (x.new_empty(x.shape, dtype=torch.float32),
            x.new_empty(batch, heads, headdim, B.shape[3], dtype=torch.float32))


def torch_form_gradients(x, dt, A, B, C, D, dt_bias, initial_states, grad_y, grad_final,
                         chunk_size, dt_softplus):
    """(dx, ddt, dA, dB, dC, dD, ddt_bias, dinitial_states) of the torch backend's chunked form
    for (grad_y, grad_final), each in its input's dtype; None for an absent input."""
    inputs = (x, dt, A, B, C, D, dt_bias, initial_states)
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() if t is not None else None for t in inputs]
        y, final = ssd_scan_chunked(*leaves[:5], chunk_size=chunk_size, D=leaves[5],
                                    dt_bias=leaves[6], dt_softplus=dt_softplus,
                                    initial_states=leaves[7], return_final_states=True)
        given = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad((y, final), given, (grad_y.float(), grad_final.float())))
    return tuple(next(grads).to(t.dtype) if t is not None else None for t in inputs)


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
    grads = torch_form_gradients(x, dt, A, B, C, D, dt_bias, initial_states, grad_y, grad_final,
                                 *ctx.options)
    return (*grads, None, None)


ssd_scan_triton_forward.register_autograd(_backward, setup_context=_setup)


def ssd_scan_triton(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
                    initial_states=None, return_final_states=False, out_dtype=torch.float32):
    """The ``triton`` backend's entry, called by ``ssd_scan`` with checked inputs."""
    y, final = ssd_scan_triton_forward(x, dt, A, B, C, D, dt_bias, initial_states,
                                       int(chunk_size), bool(dt_softplus))
    y = y.to(out_dtype)
    return (y, final) if return_final_states else y
