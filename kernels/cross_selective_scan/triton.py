"""The ``triton`` cross_selective_scan: SS2D's routes walked in place on the GPU, for inference.

Each route reads its pixels through the route table of ``routes.py`` and writes its output back
in pixel order (B, routes, C, L); one reduction sums the routes: no route copies of the input,
no (B, routes, C, L) delta, no flips or transposes. The kernel is the operator
``vmamba::cross_selective_scan_triton``; its fake and backward are ``fused.py``'s.
"""
from typing import Optional

import torch
from torch import Tensor

from ..selective_scan.triton import selective_scan_triton_forward
from ..triton_common import FORWARD_TILE, block_channels, chunk_config, pair_combine, tl, triton
from .fused import fused_entry, register_fused_operator

if triton is not None:

    @triton.jit
    def _cross_scan_fwd(x_ptr, pixels_ptr, low_ptr, w_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
                        y_ptr, dim, length, state, rank, HAS_D: tl.constexpr,
                        HAS_BIAS: tl.constexpr, ROUTES: tl.constexpr, NP: tl.constexpr,
                        CHUNK: tl.constexpr, BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        route = tl.program_id(2)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        channel = route * dim + d
        A = tl.load(A_ptr + channel[:, None] * state + n[None, :],
                    mask=row_ok[:, None] & n_ok[None, :], other=0.0)
        bias = tl.load(bias_ptr + channel, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + channel, mask=row_ok, other=0.0) if HAS_D else 0.0
        low_rows = (b * ROUTES + route) * rank * length
        bc_rows = ((b * ROUTES + route) * state + n) * length
        out_rows = ((b * ROUTES + route) * dim + d) * length
        h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        for c in range(tl.cdiv(length, CHUNK)):
            t = c * CHUNK + tl.arange(0, CHUNK)
            t_ok = t < length
            p = tl.load(pixels_ptr + route * length + t, mask=t_ok, other=0)
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
            a_run, x_run = tl.associative_scan((decay, x), 2, pair_combine)
            hs = x_run + a_run * h[:, :, None]
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += skip[:, None] * u
            tl.store(y_ptr + out_rows[:, None] + p[None, :], y, mask=mask)
            last = tl.arange(0, CHUNK)[None, None, :] == CHUNK - 1
            h = tl.sum(tl.where(last, hs, 0.0), axis=2)


def _float32(t):
    return t.float().contiguous() if t is not None else None


@torch.library.custom_op('vmamba::cross_selective_scan_triton', mutates_args=())
def cross_selective_scan_op(x: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor, B: Tensor,
                            C: Tensor, D: Optional[Tensor], delta_bias: Optional[Tensor],
                            pixels: Tensor) -> Tensor:
    """``fused_scan_reference`` in one Triton pass: (B, C, L) float32, delta with softplus.

    x: (B, C, H, W); dt_low: (B, routes, R, L), B and C: (B, routes, N, L), in pixel order;
    dt_weight: (routes, C, R); A: (routes * C, N); pixels: the (routes, L) route table.
    """
    batch, dim, height, width = x.shape
    num_routes, length = pixels.shape
    state, rank = A.shape[1], dt_low.shape[2]
    state_pad, chunk = chunk_config(state)
    block_d = block_channels(dim, state_pad, chunk, FORWARD_TILE)
    x, dt_low, dt_weight, B, C, pixels = (
        t.contiguous() for t in (x, dt_low, dt_weight, B, C, pixels))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    y = torch.empty(batch, num_routes, dim, length, device=x.device, dtype=torch.float32)
    # An absent D or bias is never read (HAS_D / HAS_BIAS): any float32 pointer stands in.
    _cross_scan_fwd[(batch, triton.cdiv(dim, block_d), num_routes)](
        x, pixels, dt_low, dt_weight, A, B, C, D if D is not None else A,
        delta_bias if delta_bias is not None else A, y, dim, length, state, rank,
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, ROUTES=num_routes, NP=state_pad,
        CHUNK=chunk, BLOCK_D=block_d)
    return y.sum(1)


def _scan_output(u, delta, A, B, C, D, delta_bias, delta_softplus):
    """The Triton selective scan's y, in the call form ``fused_scan_reference`` uses."""
    return selective_scan_triton_forward(u, delta, A, B, C, D, delta_bias, delta_softplus)[0]


register_fused_operator(cross_selective_scan_op, _scan_output)
cross_selective_scan_triton = fused_entry(cross_selective_scan_op, 'triton')
