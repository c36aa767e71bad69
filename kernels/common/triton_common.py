"""What the Triton kernels of every operation share: availability, tiling rules, the scan's
combine function. Triton kernels run on CUDA GPUs, and on the CPU under TRITON_INTERPRET=1 (how
the CPU tests reach them).
"""
import importlib.util
import os

import torch

if importlib.util.find_spec('triton') is not None:
    import triton
    import triton.language as tl
else:  # the Triton backends report themselves unavailable
    triton = None
    tl = None


def triton_devices():
    """Where the Triton backends run: CUDA, and the CPU under TRITON_INTERPRET=1 (slowly: that is
    how the CPU tests reach them)."""
    return ('cuda', 'cpu') if os.environ.get('TRITON_INTERPRET') == '1' else ('cuda', )


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


def chunk_config(state):
    """(N padded to a power of two, tokens per chunk); shared by forward and backward.

    Plain Python, so that fake implementations size their outputs without Triton; a symbolic N
    is specialised (the kernels are compiled per padded N anyway).
    """
    state_pad = 1 << max(0, int(state) - 1).bit_length()
    return state_pad, min(128, max(16, FORWARD_TILE // (8 * state_pad)))


def num_chunks(length, chunk):
    """Chunks covering ``length`` tokens; integer arithmetic only, so symbolic lengths trace."""
    return (length + chunk - 1) // chunk


def block_channels(per_group, state_pad, chunk, tile):
    """Channels per program: a power of two that divides a group and fits the tile."""
    block_d = 1
    while block_d < 32 and per_group % (block_d * 2) == 0 and \
            block_d * 2 * state_pad * chunk <= tile:
        block_d *= 2
    return block_d


if triton is not None:

    @triton.jit
    def pair_combine(a1, x1, a2, x2):
        """Compose two steps of h -> a h + x (the associative scan's operator)."""
        return a1 * a2, a2 * x1 + x2

    @triton.jit
    def load_step(delta_ptr, bias, t, t_ok, rows, row_ok, A, SOFTPLUS: tl.constexpr,
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
