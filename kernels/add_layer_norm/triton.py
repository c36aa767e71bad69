"""The ``triton`` add_layer_norm: x + residual and its LayerNorm in one pass, and the backward in
one pass.

A program owns a block of rows (pixels), each row all of its channels. Both layouts are one
addressing rule: channel c of row r sits at (r // inner) * C * inner + r % inner + c * inner,
with inner = H * W for (B, C, H, W) maps and 1 for channels-last ones, so a channel-first map is
read along its pixels (contiguous) and needs no permute. The forward writes the sum, the
normalised rows and each row's mean and 1 / std (float32); the backward reads the sum back and
writes the gradient of both inputs (the same tensor) and this block's share of the weight and
bias gradients, summed over blocks afterwards (no atomics: deterministic).

Operators ``vmamba::add_layer_norm_triton`` and ``vmamba::add_layer_norm_triton_backward``; the
first's autograd calls the second.
"""
from typing import Tuple

import torch
from torch import Tensor

from ..common.triton_common import tl, triton

# Elements of one (rows x channels) tile, and warps per program: ptxas for sm_90a gives 90-150
# registers at 96 and 768 channels on 8 warps (168-255 on 4), no spills.
TILE = 4096
NUM_WARPS = 8


def tiling(channels):
    """(channels padded to a power of two, rows per program)."""
    padded = 1 << max(0, int(channels) - 1).bit_length()
    return padded, max(1, TILE // padded)


if triton is not None:

    @triton.jit
    def _addresses(row0, rows, channels, inner, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        r = row0 + tl.arange(0, BLOCK_R)
        c = tl.arange(0, BLOCK_C)
        base = (r // inner) * channels * inner + r % inner
        mask = (r < rows)[:, None] & (c < channels)[None, :]
        return r, c, base[:, None] + c[None, :] * inner, mask

    @triton.jit
    def _add_layer_norm_fwd(x_ptr, res_ptr, w_ptr, b_ptr, sum_ptr, out_ptr, mean_ptr, rstd_ptr,
                            rows, channels, inner, eps, BLOCK_R: tl.constexpr,
                            BLOCK_C: tl.constexpr):
        r, c, at, mask = _addresses(tl.program_id(0) * BLOCK_R, rows, channels, inner, BLOCK_R,
                                    BLOCK_C)
        total = (tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32) +
                 tl.load(res_ptr + at, mask=mask, other=0.0).to(tl.float32))
        # Rounded to the sum's dtype once, as torch's add rounds: the norm and the backward
        # then see the sum that was stored.
        total = total.to(sum_ptr.dtype.element_ty)
        tl.store(sum_ptr + at, total, mask=mask)
        s = total.to(tl.float32)
        mean = tl.sum(s, axis=1) / channels
        centred = tl.where(mask, s - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / channels + eps)
        c_ok = c < channels
        w = tl.load(w_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
        out = centred * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(out_ptr + at, out, mask=mask)
        r_ok = r < rows
        tl.store(mean_ptr + r, mean, mask=r_ok)
        tl.store(rstd_ptr + r, rstd, mask=r_ok)

    @triton.jit
    def _add_layer_norm_bwd(sum_ptr, w_ptr, mean_ptr, rstd_ptr, dsum_ptr, dout_ptr, dx_ptr,
                            dw_ptr, db_ptr, rows, channels, inner, BLOCK_R: tl.constexpr,
                            BLOCK_C: tl.constexpr):
        block = tl.program_id(0)
        r, c, at, mask = _addresses(block * BLOCK_R, rows, channels, inner, BLOCK_R, BLOCK_C)
        r_ok = r < rows
        c_ok = c < channels
        mean = tl.load(mean_ptr + r, mask=r_ok, other=0.0)
        rstd = tl.load(rstd_ptr + r, mask=r_ok, other=0.0)
        s = tl.load(sum_ptr + at, mask=mask, other=0.0).to(tl.float32)
        normed = tl.where(mask, (s - mean[:, None]) * rstd[:, None], 0.0)
        dout = tl.load(dout_ptr + at, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
        dnormed = dout * w[None, :]
        # d/ds of LayerNorm: rstd (dn - mean(dn) - n mean(dn n)), plus the sum's own gradient.
        mean_dn = tl.sum(dnormed, axis=1) / channels
        mean_dn_n = tl.sum(dnormed * normed, axis=1) / channels
        ds = rstd[:, None] * (dnormed - mean_dn[:, None] - normed * mean_dn_n[:, None])
        ds += tl.load(dsum_ptr + at, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + at, ds, mask=mask)
        tl.store(dw_ptr + block * channels + c, tl.sum(dout * normed, axis=0), mask=c_ok)
        tl.store(db_ptr + block * channels + c, tl.sum(dout, axis=0), mask=c_ok)


def _geometry(x, channel_first):
    """(rows, channels, inner) of a map in its layout."""
    if channel_first:
        inner = x.shape[2] * x.shape[3]
        return x.shape[0] * inner, x.shape[1], inner
    return x.numel() // x.shape[-1], x.shape[-1], 1


@torch.library.custom_op('vmamba::add_layer_norm_triton', mutates_args=())
def add_layer_norm_op(x: Tensor, residual: Tensor, weight: Tensor, bias: Tensor, eps: float,
                      channel_first: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x + residual, its LayerNorm, each row's mean, each row's 1 / std): the first two in the
    sum's dtype, the statistics float32 (what the backward reads)."""
    rows, channels, inner = _geometry(x, channel_first)
    dtype = torch.result_type(x, residual)
    x, residual = x.to(dtype).contiguous(), residual.to(dtype).contiguous()
    total, out = torch.empty_like(x), torch.empty_like(x)
    mean = torch.empty(rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    padded, block_r = tiling(channels)
    _add_layer_norm_fwd[(triton.cdiv(rows, block_r), )](
        x, residual, weight.contiguous(), bias.contiguous(), total, out, mean, rstd, rows,
        channels, inner, eps, BLOCK_R=block_r, BLOCK_C=padded, num_warps=NUM_WARPS)
    return total, out, mean, rstd


@add_layer_norm_op.register_fake
def _(x, residual, weight, bias, eps, channel_first):
    rows = _geometry(x, channel_first)[0]
    dtype = torch.result_type(x, residual)
    return (x.new_empty(x.shape, dtype=dtype), x.new_empty(x.shape, dtype=dtype),
            x.new_empty(rows, dtype=torch.float32), x.new_empty(rows, dtype=torch.float32))


@torch.library.custom_op('vmamba::add_layer_norm_triton_backward', mutates_args=())
def add_layer_norm_backward_op(total: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor,
                               grad_total: Tensor, grad_out: Tensor, channel_first: bool
                               ) -> Tuple[Tensor, Tensor, Tensor]:
    """(gradient of x and of residual (one tensor, the sum's dtype), dweight, dbias)."""
    rows, channels, inner = _geometry(total, channel_first)
    padded, block_r = tiling(channels)
    blocks = triton.cdiv(rows, block_r)
    float32 = dict(device=total.device, dtype=torch.float32)
    dx = torch.empty(total.shape, **float32)
    dw, db = torch.empty(blocks, channels, **float32), torch.empty(blocks, channels, **float32)
    _add_layer_norm_bwd[(blocks, )](
        total.contiguous(), weight.contiguous(), mean, rstd, grad_total.contiguous(),
        grad_out.contiguous(), dx, dw, db, rows, channels, inner, BLOCK_R=block_r,
        BLOCK_C=padded, num_warps=NUM_WARPS)
    return dx.to(total.dtype), dw.sum(0).to(weight.dtype), db.sum(0).to(weight.dtype)


@add_layer_norm_backward_op.register_fake
def _(total, weight, mean, rstd, grad_total, grad_out, channel_first):
    return (torch.empty_like(total, memory_format=torch.contiguous_format),
            torch.empty_like(weight), torch.empty_like(weight))


def _setup(ctx, inputs, output):
    x, residual, weight, bias, eps, channel_first = inputs
    total, _, mean, rstd = output
    ctx.channel_first = channel_first
    ctx.dtypes = x.dtype, residual.dtype
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(total, weight, mean, rstd)


def _backward(ctx, grad_total, grad_out, grad_mean, grad_rstd):
    total, weight, mean, rstd = ctx.saved_tensors
    ds, dw, db = add_layer_norm_backward_op(total, weight, mean, rstd, grad_total, grad_out,
                                            ctx.channel_first)
    return ds.to(ctx.dtypes[0]), ds.to(ctx.dtypes[1]), dw, db, None, None


add_layer_norm_op.register_autograd(_backward, setup_context=_setup)


def _channels_last_in_memory(t):
    return t.dim() == 4 and t.permute(0, 2, 3, 1).is_contiguous()


def add_layer_norm_triton(x, residual, weight, bias, eps, channel_first):
    """The ``triton`` backend's add_layer_norm. (B, C, H, W) maps that are channels-last in
    memory (as the scan core's output leaves a channel-first model's maps on the GPU) are read as
    rows of channels and come back in the same memory format: no copy either way."""
    if channel_first and _channels_last_in_memory(x) and _channels_last_in_memory(residual):
        total, normed, _, _ = add_layer_norm_op(x.permute(0, 2, 3, 1),
                                                residual.permute(0, 2, 3, 1), weight, bias, eps,
                                                False)
        return total.permute(0, 3, 1, 2), normed.permute(0, 3, 1, 2)
    total, normed, _, _ = add_layer_norm_op(x, residual, weight, bias, eps, channel_first)
    return total, normed
