"""The ``torch`` backend: the selective scan in plain tensor ops, autograd- and export-safe.

The recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(delta_t A) in (0, 1]) is solved in chunks of
``CHUNK`` tokens, all chunks at once: a loop of ``CHUNK`` steps walks every chunk in parallel from
a zero state, then the state each chunk should have started from is the same recurrence over the
chunks' end states, one element per chunk, solved by the same function. Every operation multiplies
by decays <= 1, so no value can overflow however strong the decay (unlike cumulative-sum forms,
which divide by running products). The chunk length is a constant: no data-dependent control
flow, so ``torch.compile`` and ``torch.export`` see one static graph for any input.
"""
import torch
import torch.nn.functional as F

from ..scan_common import add_skip, prepare_delta

CHUNK = 16


def linear_recurrence(decay, drive):
    """h_t = decay_t * h_{t-1} + drive_t along the last dim, h_{-1} = 0; decay broadcasts."""
    decay = decay.expand_as(drive)
    length = drive.shape[-1]
    if length == 0:
        return drive.clone()
    if length <= CHUNK:
        return _walk(decay, drive)[0]
    pad = (-length) % CHUNK
    decay = F.pad(decay, (0, pad), value=1.0)
    drive = F.pad(drive, (0, pad))
    decay = decay.unflatten(-1, (-1, CHUNK))
    h, decay_from_start = _walk(decay, drive.unflatten(-1, (-1, CHUNK)))
    # State entering each chunk: the end states chained through the chunks' total decays.
    ends = linear_recurrence(decay_from_start[..., -1], h[..., -1])
    carry_in = F.pad(ends[..., :-1], (1, 0))
    h = h + decay_from_start * carry_in.unsqueeze(-1)
    return h.flatten(-2)[..., :length]


def _walk(decay, drive):
    """The recurrence along the last dim, step by step: (h, running product of the decays)."""
    # Time first and contiguous, so each step reads and writes whole slabs, not strided columns.
    decay, drive = decay.movedim(-1, 0).contiguous(), drive.movedim(-1, 0).contiguous()
    # From a zero state, not from drive_0: the first decay still gets its (zero) gradient.
    h = torch.zeros_like(drive[0])
    states = []
    for t in range(drive.shape[0]):
        h = decay[t] * h + drive[t]
        states.append(h)
    return torch.stack(states, -1), torch.cumprod(decay, 0).movedim(0, -1)


def decays_and_drives(u, delta, A, B):
    """exp(delta A) and delta B u, float32, as (batch, groups, channels per group, N, L): B and C
    broadcast over a group's channels without copies. ``delta`` is prepared already."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    delta5 = delta.view(batch, groups, per_group, 1, length)
    decay = torch.exp(delta5 * A.float().view(1, groups, per_group, state, 1))
    drive = (delta5 * u.float().view(batch, groups, per_group, 1, length)) * \
        B.float().unsqueeze(2)
    return decay, drive


def selective_scan_chunked(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                           out_dtype=torch.float32):
    batch, dim, length = u.shape
    state = A.shape[1]
    decay, drive = decays_and_drives(u, prepare_delta(delta, delta_bias, delta_softplus), A, B)
    h = linear_recurrence(decay, drive)
    if state == 1:
        y = h.squeeze(3) * C.float()
    else:
        y = (h * C.float().unsqueeze(2)).sum(3)
    return add_skip(y.reshape(batch, dim, length), u, D, out_dtype)
