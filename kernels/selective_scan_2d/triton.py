"""The 2D selective scan in Triton (CUDA GPUs; on the CPU under TRITON_INTERPRET=1 for tests).

One program owns a block of channels of one batch element and walks the H x W grid row by row,
each row in tiles of columns held in registers as (channels, N, tile) tensors:

- row pass: an associative scan over the tile's (a, x) pairs, plus the carry g from the tile on
  its left (the last column of that tile's g);
- column pass: h = a h_up + g, with h_up the previous row's column states. When the row fits in
  one tile they stay in registers; otherwise they go through a scratch row (batch, dim, N, 2, W)
  in memory, written to one half while the other is read (rows alternate halves), with a barrier
  between rows so that a row reads what every thread of the program wrote for the row above.

Nothing of shape (batch, dim, N, H, W) reaches memory. The forward saves checkpoints for the
backward: the column states entering every block of ``ROWS_PER_CHECKPOINT`` rows,
(batch, dim, N padded, H / R, W) float32 (zeros for the first block).

The backward walks the blocks from the bottom. For each block it recomputes the block's g and h
from its checkpoint into a scratch of that block's size ((batch, dim, N, R + 1, W) for h, with
the checkpoint as row 0, and (batch, dim, N, R, W) for g); then it walks the block's rows from
the bottom and each row's tiles from the right with the adjoint passes (see the closed form in
tests/kernels/oracles.py):

- gamma = dL/dg, the reverse column recurrence gamma = C dy + a_below gamma_below; the row above
  needs a gamma, kept like the forward's column states (registers or a two-half scratch row);
- beta = dL/dx, the reverse row recurrence beta = gamma + a_right beta_right: an associative scan
  run in reverse over the tile, with the carry from the tile on the right;
- dL/da = gamma h_up + beta g_left, read from the block scratch (shifted by a row or a column).

Memory the backward adds for its duration: (batch, dim, N, 2 R + 3, W) float32 of scratch, plus
(batch, num channel blocks, N, L) float32 partial sums of dB and dC. Gradients of B and C are summed
over the channels of a block in the kernel and over blocks by a plain reduction afterwards: no
atomics, so the backward is deterministic.

Both kernels are plain ``torch.library`` operators, as the 1D scan's (see
``selective_scan/triton.py`` for why not ``triton_op``): ``vmamba::selective_scan_2d_triton``
returns y and the checkpoints, ``vmamba::selective_scan_2d_triton_backward`` the seven gradients;
the forward's registered autograd calls the backward.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common.scan_operators import (backward_fake, gradient_buffers, reduce_gradients,
                                     register_saved_state_autograd)
from ..common.triton_common import (BACKWARD_TILE, block_channels, chunk_config, load_step,
                                    pair_combine, tl, triton)

# Rows between two forward checkpoints: the checkpoints kept from the forward to the backward are
# 1 / R of a full h; the backward's transient scratch holds about 2 R rows.
ROWS_PER_CHECKPOINT = 16
# The narrowest column tile: tiles are powers of two, and narrower ones are mostly lanes of
# nothing for grids a few columns wide.
MIN_TILE = 8
# Elements per (channels x N x tile) register tile of the forward: smaller than the 1D scan's
# FORWARD_TILE, since the column states of a one-tile row stay alive beside the row pass. ptxas for
# sm_90 reports spills at 2048 and 4096 for N = 1 on 56 x 56 and 56 x 200 grids, none at 1024.
FORWARD_TILE_2D = 1024

if triton is not None:

    @triton.jit
    def _selective_scan_2d_fwd(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
                               checkpoints_ptr, column_rows_ptr, dim, height, width, groups,
                               state, per_group, num_tiles, rows_per_block, num_blocks,
                               HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                               SOFTPLUS: tl.constexpr, NP: tl.constexpr, TILE: tl.constexpr,
                               BLOCK_D: tl.constexpr, ONE_TILE: tl.constexpr):
        b = tl.program_id(0)
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        g = (tl.program_id(1) * BLOCK_D) // per_group
        length = height * width
        rows = (b * dim + d) * length  # where each channel's tokens start in u, delta, y
        A = tl.load(A_ptr + d[:, None] * state + n[None, :], mask=row_ok[:, None] & n_ok[None, :],
                    other=0.0)
        bias = tl.load(bias_ptr + d, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + d, mask=row_ok, other=0.0) if HAS_D else 0.0
        bc_rows = ((b * groups + g) * state + n) * length
        # (channel, state) pairs numbered across the batch: the rows of the scratch buffers.
        pairs = ((b * dim + d[:, None]) * NP + n[None, :])[:, :, None]
        cols = tl.arange(0, TILE)
        last = cols[None, None, :] == TILE - 1
        h_tile = tl.zeros((BLOCK_D, NP, TILE), dtype=tl.float32)  # column states, ONE_TILE
        for i in range(height):
            read = i % 2  # the scratch half holding the row above; this row writes the other
            g_left = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
            for c in range(num_tiles):
                j = c * TILE + cols
                j_ok = j < width
                t = i * width + j
                mask = row_ok[:, None] & j_ok[None, :]
                bc_mask = n_ok[:, None] & j_ok[None, :]
                mask3 = row_ok[:, None, None] & j_ok[None, None, :]
                u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask,
                            other=0.0).to(tl.float32)
                _, step, decay = load_step(delta_ptr, bias, t, j_ok, rows, row_ok, A, SOFTPLUS,
                                           HAS_BIAS)
                Bt = tl.load(B_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                             other=0.0).to(tl.float32)
                Ct = tl.load(C_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                             other=0.0).to(tl.float32)
                valid = j_ok[None, None, :]
                # Columns past the grid: identity steps, so the row's last g reaches the tile end.
                decay = tl.where(valid, decay, 1.0)
                x = tl.where(valid, (step * u)[:, None, :] * Bt[None, :, :], 0.0)
                a_run, x_run = tl.associative_scan((decay, x), 2, pair_combine)
                g_row = x_run + a_run * g_left[:, :, None]
                g_left = tl.sum(tl.where(last, g_row, 0.0), axis=2)
                if ONE_TILE:
                    h = decay * h_tile + g_row
                    h_tile = h
                else:
                    h_up = tl.load(column_rows_ptr + (pairs * 2 + read) * width + j[None, None, :],
                                   mask=mask3 & (i > 0), other=0.0)
                    h = decay * h_up + g_row
                    tl.store(column_rows_ptr + (pairs * 2 + 1 - read) * width + j[None, None, :],
                             h, mask=mask3)
                # Checkpoints: zeros entering block 0; h of the last row of every other block.
                at_checkpoint = (i + 1) % rows_per_block == 0
                block = (i + 1) // rows_per_block
                tl.store(checkpoints_ptr + (pairs * num_blocks + block) * width + j[None, None, :],
                         h, mask=mask3 & at_checkpoint & (block < num_blocks))
                tl.store(checkpoints_ptr + pairs * num_blocks * width + j[None, None, :],
                         tl.zeros_like(h), mask=mask3 & (i == 0))
                y = tl.sum(h * Ct[None, :, :], axis=1)
                if HAS_D:
                    y += skip[:, None] * u
                tl.store(y_ptr + rows[:, None] + t[None, :], y, mask=mask)
            if not ONE_TILE:
                tl.debug_barrier()  # the next row reads what all threads wrote for this one

    @triton.jit
    def _selective_scan_2d_bwd(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dy_ptr,
                               checkpoints_ptr, gamma_rows_ptr, h_block_ptr, g_block_ptr,
                               du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
                               dim, height, width, groups, state, per_group, num_tiles,
                               rows_per_block, num_blocks, num_dblocks,
                               HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                               SOFTPLUS: tl.constexpr, NP: tl.constexpr, TILE: tl.constexpr,
                               BLOCK_D: tl.constexpr, ONE_TILE: tl.constexpr):
        b = tl.program_id(0)
        dblock = tl.program_id(1)
        d = dblock * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, NP)
        row_ok = d < dim
        n_ok = n < state
        g = (dblock * BLOCK_D) // per_group
        length = height * width
        rows = (b * dim + d) * length
        A = tl.load(A_ptr + d[:, None] * state + n[None, :], mask=row_ok[:, None] & n_ok[None, :],
                    other=0.0)
        bias = tl.load(bias_ptr + d, mask=row_ok, other=0.0) if HAS_BIAS else 0.0
        skip = tl.load(D_ptr + d, mask=row_ok, other=0.0) if HAS_D else 0.0
        bc_rows = ((b * groups + g) * state + n) * length
        part_rows = ((b * num_dblocks + dblock) * state + n) * length
        pairs = ((b * dim + d[:, None]) * NP + n[None, :])[:, :, None]
        # Rows of this program's block scratch: h has the checkpoint as its row 0.
        h_rows = pairs * (rows_per_block + 1)
        g_rows = pairs * rows_per_block
        cols = tl.arange(0, TILE)
        last = cols[None, None, :] == TILE - 1
        first = cols[None, None, :] == 0
        gamma_tile = tl.zeros((BLOCK_D, NP, TILE), dtype=tl.float32)  # a gamma of the row below
        dA_acc = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        dD_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
        dbias_acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
        for block_from_bottom in range(num_blocks):
            block = num_blocks - 1 - block_from_bottom
            top = block * rows_per_block
            block_rows = tl.minimum(rows_per_block, height - top)
            # Recompute the block's g and h from the column states entering it.
            for c in range(num_tiles):
                j = c * TILE + cols
                mask3 = row_ok[:, None, None] & (j < width)[None, None, :]
                entering = tl.load(
                    checkpoints_ptr + (pairs * num_blocks + block) * width + j[None, None, :],
                    mask=mask3, other=0.0)
                tl.store(h_block_ptr + h_rows * width + j[None, None, :], entering, mask=mask3)
            tl.debug_barrier()
            for k in range(block_rows):
                i = top + k
                g_left = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
                for c in range(num_tiles):
                    j = c * TILE + cols
                    j_ok = j < width
                    t = i * width + j
                    mask = row_ok[:, None] & j_ok[None, :]
                    bc_mask = n_ok[:, None] & j_ok[None, :]
                    mask3 = row_ok[:, None, None] & j_ok[None, None, :]
                    u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask,
                                other=0.0).to(tl.float32)
                    _, step, decay = load_step(delta_ptr, bias, t, j_ok, rows, row_ok, A,
                                               SOFTPLUS, HAS_BIAS)
                    Bt = tl.load(B_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                                 other=0.0).to(tl.float32)
                    valid = j_ok[None, None, :]
                    decay = tl.where(valid, decay, 1.0)
                    x = tl.where(valid, (step * u)[:, None, :] * Bt[None, :, :], 0.0)
                    a_run, x_run = tl.associative_scan((decay, x), 2, pair_combine)
                    g_row = x_run + a_run * g_left[:, :, None]
                    g_left = tl.sum(tl.where(last, g_row, 0.0), axis=2)
                    h_up = tl.load(h_block_ptr + (h_rows + k) * width + j[None, None, :],
                                   mask=mask3, other=0.0)
                    tl.store(h_block_ptr + (h_rows + k + 1) * width + j[None, None, :],
                             decay * h_up + g_row, mask=mask3)
                    tl.store(g_block_ptr + (g_rows + k) * width + j[None, None, :], g_row,
                             mask=mask3)
                tl.debug_barrier()
            # The adjoint passes over the block: rows from the bottom, tiles from the right.
            for k_from_bottom in range(block_rows):
                k = block_rows - 1 - k_from_bottom
                i = top + k
                read = i % 2  # the gamma scratch half the row below wrote
                beta_right = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
                for c_from_right in range(num_tiles):
                    c = num_tiles - 1 - c_from_right
                    j = c * TILE + cols
                    j_ok = j < width
                    t = i * width + j
                    mask = row_ok[:, None] & j_ok[None, :]
                    bc_mask = n_ok[:, None] & j_ok[None, :]
                    mask3 = row_ok[:, None, None] & j_ok[None, None, :]
                    valid = j_ok[None, None, :]
                    u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask,
                                other=0.0).to(tl.float32)
                    dy = tl.load(dy_ptr + rows[:, None] + t[None, :], mask=mask,
                                 other=0.0).to(tl.float32)
                    raw, step, decay = load_step(delta_ptr, bias, t, j_ok, rows, row_ok, A,
                                                 SOFTPLUS, HAS_BIAS)
                    right_ok = j + 1 < width
                    _, _, decay_right = load_step(delta_ptr, bias, t + 1, right_ok, rows, row_ok,
                                                  A, SOFTPLUS, HAS_BIAS)
                    # No column right of the grid: nothing flows back from there.
                    decay_right = tl.where(right_ok[None, None, :], decay_right, 0.0)
                    Bt = tl.load(B_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                                 other=0.0).to(tl.float32)
                    Ct = tl.load(C_ptr + bc_rows[:, None] + t[None, :], mask=bc_mask,
                                 other=0.0).to(tl.float32)
                    gamma = tl.where(valid, Ct[None, :, :] * dy[:, None, :], 0.0)
                    if ONE_TILE:
                        gamma += gamma_tile
                        gamma_tile = decay * gamma
                    else:
                        gamma += tl.load(
                            gamma_rows_ptr + (pairs * 2 + read) * width + j[None, None, :],
                            mask=mask3 & (i + 1 < height), other=0.0)
                        tl.store(gamma_rows_ptr + (pairs * 2 + 1 - read) * width +
                                 j[None, None, :], decay * gamma, mask=mask3)
                    a_run, x_run = tl.associative_scan((decay_right, gamma), 2, pair_combine,
                                                       reverse=True)
                    beta = tl.where(valid, x_run + a_run * beta_right[:, :, None], 0.0)
                    beta_right = tl.sum(tl.where(first, beta, 0.0), axis=2)
                    h_up = tl.load(h_block_ptr + (h_rows + k) * width + j[None, None, :],
                                   mask=mask3, other=0.0)
                    h = tl.load(h_block_ptr + (h_rows + k + 1) * width + j[None, None, :],
                                mask=mask3, other=0.0)
                    g_left = tl.load(g_block_ptr + (g_rows + k) * width + j[None, None, :] - 1,
                                     mask=mask3 & (j >= 1)[None, None, :], other=0.0)
                    grad_log_decay = (gamma * h_up + beta * g_left) * decay
                    du = tl.sum(beta * Bt[None, :, :], axis=1) * step
                    if HAS_D:
                        du += dy * skip[:, None]
                        dD_acc += tl.sum(dy * u, axis=1)
                    dstep = tl.sum(beta * (u[:, None, :] * Bt[None, :, :]) +
                                   grad_log_decay * A[:, :, None], axis=1)
                    dA_acc += tl.sum(grad_log_decay * step[:, None, :], axis=2)
                    if SOFTPLUS:
                        dstep = dstep * tl.where(raw > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-raw)))
                    dstep = tl.where(mask, dstep, 0.0)
                    dbias_acc += tl.sum(dstep, axis=1)
                    tl.store(du_ptr + rows[:, None] + t[None, :], du, mask=mask)
                    tl.store(ddelta_ptr + rows[:, None] + t[None, :], dstep, mask=mask)
                    dB = tl.sum(beta * (step * u)[:, None, :], axis=0)
                    dC = tl.sum(h * dy[:, None, :], axis=0)
                    tl.store(dB_ptr + part_rows[:, None] + t[None, :], dB, mask=bc_mask)
                    tl.store(dC_ptr + part_rows[:, None] + t[None, :], dC, mask=bc_mask)
                # The row above reads this row's gamma; the next block overwrites the scratch.
                tl.debug_barrier()
        tl.store(dA_ptr + (b * dim + d[:, None]) * state + n[None, :], dA_acc,
                 mask=row_ok[:, None] & n_ok[None, :])
        if HAS_D:
            tl.store(dD_ptr + b * dim + d, dD_acc, mask=row_ok)
        if HAS_BIAS:
            tl.store(dbias_ptr + b * dim + d, dbias_acc, mask=row_ok)


def grid_layout(state, height, width):
    """(N padded to a power of two, tile width, column tiles, rows per checkpoint block,
    checkpoint blocks) of a scan of N states on an H x W grid; plain Python, so that fake
    implementations size their outputs without Triton."""
    state_pad, chunk = chunk_config(state)
    width_pad = 1 << max(0, int(width) - 1).bit_length()
    tile = min(chunk, max(MIN_TILE, width_pad))
    rows_per_block = min(ROWS_PER_CHECKPOINT, int(height))
    return (state_pad, tile, (width + tile - 1) // tile, rows_per_block,
            (height + rows_per_block - 1) // rows_per_block)


def _float32(t):
    return t.float().contiguous() if t is not None else None


def _check_grid(u, height, width):
    if height < 1 or width < 1 or height * width != u.shape[-1]:
        raise ValueError(f'selective_scan_2d_triton: grid {height} x {width} does not hold the '
                         f'L = {u.shape[-1]} tokens of u')


@torch.library.custom_op('vmamba::selective_scan_2d_triton', mutates_args=())
def selective_scan_2d_triton_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                     D: Optional[Tensor], delta_bias: Optional[Tensor],
                                     delta_softplus: bool, height: int, width: int
                                     ) -> Tuple[Tensor, Tensor]:
    """The 2D scan (B, C as (batch, G, N, L)): float32 y (batch, dim, L) and the column states
    entering every block of rows (batch, dim, N padded, blocks, W), which the backward reads."""
    _check_grid(u, height, width)
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    state_pad, tile, tiles, rows_per_block, blocks = grid_layout(state, height, width)
    block_d = block_channels(per_group, state_pad, tile, FORWARD_TILE_2D)
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    float32 = dict(device=u.device, dtype=torch.float32)
    y = torch.empty(batch, dim, length, **float32)
    checkpoints = torch.empty(batch, dim, state_pad, blocks, width, **float32)
    one_tile = tiles == 1
    # Two halves of one grid row of column states, when they do not fit in registers.
    column_rows = y if one_tile else torch.empty(batch, dim, state_pad, 2, width, **float32)
    # An absent D or bias is never read (HAS_D / HAS_BIAS): any float32 pointer stands in.
    _selective_scan_2d_fwd[(batch, triton.cdiv(dim, block_d))](
        u, delta, A, B, C, D if D is not None else A, delta_bias if delta_bias is not None else A,
        y, checkpoints, column_rows, dim, height, width, groups, state, per_group, tiles,
        rows_per_block, blocks, HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, NP=state_pad, TILE=tile, BLOCK_D=block_d, ONE_TILE=one_tile)
    return y, checkpoints


@selective_scan_2d_triton_forward.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, height, width):
    batch, dim, length = u.shape
    state_pad, _, _, _, blocks = grid_layout(A.shape[1], height, width)
    return (u.new_empty(batch, dim, length, dtype=torch.float32),
            u.new_empty(batch, dim, state_pad, blocks, width, dtype=torch.float32))


@torch.library.custom_op('vmamba::selective_scan_2d_triton_backward', mutates_args=())
def selective_scan_2d_triton_backward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                      D: Optional[Tensor], delta_bias: Optional[Tensor],
                                      checkpoints: Tensor, grad_y: Tensor, delta_softplus: bool,
                                      height: int, width: int
                                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                                 Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias) from the forward's checkpoints; du, ddelta, dB,
    dC in their input's dtype, the rest float32. dD and ddelta_bias are zeros when D or the bias
    is absent (an operator cannot return None)."""
    _check_grid(u, height, width)
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    state_pad, tile, tiles, rows_per_block, blocks = grid_layout(state, height, width)
    block_d = block_channels(per_group, state_pad, tile, BACKWARD_TILE)
    num_dblocks = triton.cdiv(dim, block_d)
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    A, D, delta_bias = _float32(A), _float32(D), _float32(delta_bias)
    grad_y = grad_y.float().contiguous()
    grads = gradient_buffers(u, state, num_dblocks)
    float32 = dict(device=u.device, dtype=torch.float32)
    one_tile = tiles == 1
    # Two halves of one grid row of gamma when it does not fit in registers (else unused).
    gamma_rows = (grads['du'] if one_tile else
                  torch.empty(batch, dim, state_pad, 2, width, **float32))
    h_block = torch.empty(batch, dim, state_pad, rows_per_block + 1, width, **float32)
    g_block = torch.empty(batch, dim, state_pad, rows_per_block, width, **float32)
    _selective_scan_2d_bwd[(batch, num_dblocks)](
        u, delta, A, B, C, D if D is not None else A, delta_bias if delta_bias is not None else A,
        grad_y, checkpoints.contiguous(), gamma_rows, h_block, g_block, *grads.values(), dim,
        height, width, groups, state, per_group, tiles, rows_per_block, blocks, num_dblocks,
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        NP=state_pad, TILE=tile, BLOCK_D=block_d, ONE_TILE=one_tile)
    return reduce_gradients(grads, u, delta, B, C)


@selective_scan_2d_triton_backward.register_fake
def _(u, delta, A, B, C, D, delta_bias, checkpoints, grad_y, delta_softplus, height, width):
    return backward_fake(u, delta, A, B, C)


register_saved_state_autograd(selective_scan_2d_triton_forward,
                              selective_scan_2d_triton_backward)


def selective_scan_2d_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                             height=None, width=None, out_dtype=torch.float32):
    """The ``triton`` backend's entry, called by ``selective_scan_2d`` with checked inputs."""
    y, _ = selective_scan_2d_triton_forward(u, delta, A, B, C, D, delta_bias,
                                            bool(delta_softplus), int(height), int(width))
    return y.to(out_dtype)
