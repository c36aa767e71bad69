"""The chunked linear recurrence in tensor ops, shared by the ``torch`` backends of the scans.

The recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(delta_t A) in (0, 1]) is solved in chunks of
``CHUNK`` tokens, all chunks at once: a loop of ``CHUNK`` steps walks every chunk in parallel from
a zero state, then the state each chunk should have started from is the same recurrence over the
chunks' end states, one element per chunk, solved by ``chain``. Every operation multiplies by
decays <= 1, so no value can overflow however strong the decay (unlike cumulative-sum forms,
which divide by running products). The chunk length is a constant: no data-dependent control
flow, so ``torch.compile`` and ``torch.export`` see one static graph for any input.
"""
import torch
import torch.nn.functional as F

CHUNK = 16
# Doubling steps of the chain across chunks in a graph with symbolic sizes: enough for
# 2**MAX_DOUBLINGS chunks (a million tokens per route: a 4096 x 4096 map).
MAX_DOUBLINGS = 16


def chunk_count(length):
    """How many CHUNK-token chunks the ``torch`` cross_selective_scan cuts a route of ``length``
    tokens into: enough to hold it, and, when ``length`` is symbolic (torch.export or
    torch.compile with dynamic sizes), one more, all padding.

    Why the extra chunk: torch.export (2.14) reshapes a permuted tensor wrongly when one of its
    symbolic dims is 1 in the example input: the example's sizes end up as constants in the
    shapes after it. A traced example whose sequence fitted one chunk (a stage of <= 16 tokens)
    then gave an ONNX file that fails at every size with more chunks. With the extra chunk the
    traced count is never 1, and the graph is the same for every length.
    """
    chunks = (length + CHUNK - 1) // CHUNK
    return chunks + 1 if isinstance(length, torch.SymInt) else chunks


def linear_recurrence(decay, drive):
    """h_t = decay_t * h_{t-1} + drive_t along the last dim, h_{-1} = 0; decay broadcasts."""
    decay = decay.expand_as(drive)
    length = drive.shape[-1]
    if length == 0:
        return drive.clone()
    # Always padded to whole chunks, even a sequence shorter than one: the graph is the same
    # for every length, so an export with symbolic sizes holds no branch on them.
    chunks = (length + CHUNK - 1) // CHUNK
    pad = chunks * CHUNK - length
    decay = F.pad(decay, (0, pad), value=1.0).unflatten(-1, (chunks, CHUNK))
    drive = F.pad(drive, (0, pad)).unflatten(-1, (chunks, CHUNK))
    h, decay_from_start = _walk(decay, drive)
    # State entering each chunk: the end states chained through the chunks' total decays.
    ends = chain(decay_from_start[..., -1], h[..., -1])
    carry_in = F.pad(ends[..., :-1], (1, 0))
    h = h + decay_from_start * carry_in.unsqueeze(-1)
    return h.flatten(-2)[..., :length]


def _walk(decay, drive):
    """The recurrence along the last dim, step by step: (h, running product of the decays)."""
    # Time first and contiguous, so each step reads and writes whole slabs, not strided columns.
    decay, drive = decay.movedim(-1, 0).contiguous(), drive.movedim(-1, 0).contiguous()
    # From a zero state, not from drive_0: the first decay still gets its (zero) gradient.
    h = torch.zeros_like(drive[0])
    product = torch.ones_like(decay[0])
    states, products = [], []
    for t in range(drive.shape[0]):
        h = decay[t] * h + drive[t]
        product = product * decay[t]
        states.append(h)
        products.append(product)
    return torch.stack(states, -1), torch.stack(products, -1)


def chain(decay, drive):
    """The recurrence over the chunks' (total decay, end state) pairs, by recursive doubling:
    after the step with shift s every element holds its sum over the last 2s chunks."""
    chunks = drive.shape[-1]
    # A shape known in Python takes just the steps it needs; a symbolic one (an export with
    # dynamic sizes) takes enough for any input up to MAX_CHUNKS chunks, a fixed graph.
    steps = MAX_DOUBLINGS if isinstance(chunks, torch.SymInt) else max(chunks - 1, 1).bit_length()
    shift = 1
    for _ in range(steps):
        drive = drive + decay * _shifted(drive, shift, 0.0)
        decay = decay * _shifted(decay, shift, 1.0)
        shift *= 2
    return drive


def _shifted(x, shift, fill):
    """x moved ``shift`` places along the last dim, ``fill`` entering at the front."""
    # Cut first, then pad: never a temporary of length + shift (a dynamic-shape graph takes
    # shifts up to 2**15 whatever the length).
    kept = torch.sym_max(x.shape[-1] - shift, 0)
    return F.pad(x[..., :kept], (x.shape[-1] - kept, 0), value=fill)


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


