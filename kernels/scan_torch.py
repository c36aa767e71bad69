"""Vectorised selective scan in plain PyTorch ops: the fast CPU path, autograd-capable.

The recurrence h_t = a_t h_{t-1} + b_t with a_t = exp(g_t), g_t = delta_t * A <= 0, is solved in
chunks of T tokens. Inside a chunk, with the running log-decay c_t = g_1 + ... + g_t,

    h_t = exp(c_t) * sum_{s<=t} exp(-c_s) b_s   (+ exp(c_t) * carry from earlier chunks),

i.e. two cumsums and a few elementwise passes instead of a loop over tokens. exp(-c_s) grows as
the chunk decays, so T is chosen per call so that no chunk decays by more than
exp(-MAX_CHUNK_DECAY); if even two steps decay more than that, single steps are floored at
exp(-MAX_STEP_DECAY) (about 1e-13: below float32 resolution of the state it multiplies). The
carries between chunks form the same recurrence, one element per chunk, and are solved by the same
function, recursively. No in-place updates, so autograd and tracing work; the only data-dependent
branch is the chunk length.
"""
import torch
import torch.nn.functional as F

from .scan_common import add_skip, prepare_delta

MAX_CHUNK = 64
MIN_DIVISOR_CHUNK = 8
MAX_CHUNK_DECAY = 60.0
MAX_STEP_DECAY = 30.0


def _preferred_chunk(length):
    """A chunk length that divides L when one of reasonable size exists (no padding copies)."""
    if length <= MAX_CHUNK:
        return length
    for chunk in range(MAX_CHUNK, MIN_DIVISOR_CHUNK - 1, -1):
        if length % chunk == 0:
            return chunk
    return MAX_CHUNK


def _worst_chunk_decay(log_decay, chunk):
    pad = (-log_decay.shape[-1]) % chunk
    g = F.pad(log_decay, (0, pad)) if pad else log_decay
    return g.unflatten(-1, (-1, chunk)).sum(-1).min().item()


def _chunk_length(log_decay):
    """The longest chunk whose total decay stays within exp(-MAX_CHUNK_DECAY); 1 if none >= 2."""
    chunk = _preferred_chunk(log_decay.shape[-1])
    while chunk >= 2:
        if _worst_chunk_decay(log_decay, chunk) >= -MAX_CHUNK_DECAY:
            return chunk
        chunk = chunk // 2 if chunk > 2 else 1
    return 1


def linear_recurrence(log_decay, drive):
    """h_t = exp(log_decay_t) * h_{t-1} + drive_t along the last dim, h_0 = 0; log_decay <= 0."""
    length = log_decay.shape[-1]
    chunk = _chunk_length(log_decay.detach())
    if chunk == 1:
        # Single steps decay by more than exp(-MAX_CHUNK_DECAY / 2): floor them, then pairs fit.
        log_decay = log_decay.clamp(min=-MAX_STEP_DECAY)
        chunk = 2
    pad = (-length) % chunk
    if pad:
        log_decay = F.pad(log_decay, (0, pad))
        drive = F.pad(drive, (0, pad))
    running = torch.cumsum(log_decay.unflatten(-1, (-1, chunk)), dim=-1)
    decay_from_start = torch.exp(running)
    # exp(-running), not 1 / exp(running): the latter's gradient squares a tiny number.
    h = decay_from_start * torch.cumsum(
        drive.unflatten(-1, (-1, chunk)) * torch.exp(-running), dim=-1)
    if h.shape[-2] > 1:
        # State at the end of every chunk, then each chunk picks up its predecessor's.
        ends = linear_recurrence(running[..., -1], h[..., -1])
        carry_in = F.pad(ends[..., :-1], (1, 0))
        h = h + decay_from_start * carry_in.unsqueeze(-1)
    h = h.flatten(-2)
    return h[..., :length] if pad else h


def selective_scan_chunked(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                           out_dtype=torch.float32, recurrence=linear_recurrence):
    """The ``torch`` backend; ``recurrence`` swaps in another solver (the ``cpp`` backend)."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    # Work in (batch, groups, channels per group, N, L) so B and C broadcast without copies.
    delta5 = delta.view(batch, groups, per_group, 1, length)
    log_decay = delta5 * A.float().view(1, groups, per_group, state, 1)
    drive = (delta5 * u.float().view(batch, groups, per_group, 1, length)) * \
        B.float().unsqueeze(2)
    h = recurrence(log_decay, drive)
    if state == 1:
        y = h.squeeze(3) * C.float()
    else:
        y = (h * C.float().unsqueeze(2)).sum(3)
    return add_skip(y.reshape(batch, dim, length), u, D, out_dtype)

