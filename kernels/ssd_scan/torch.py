"""The ``torch`` backend of SSD: the chunked "state space duality" form in plain tensor ops.

The sequence is cut into chunks of Q = ``chunk_size`` steps (zero-padded to whole chunks: a
padded step has dt' = 0, so it neither decays nor drives the state). Per chunk and head, with
``a = dt' A`` and its running sum within the chunk:

- intra-chunk output: ``(C B^T * Lmask) (dt' x)``, with ``Lmask[i, j] = exp(a_{j+1} + ... + a_i)``
  for i >= j, else 0, built from a segment sum (a cumulative sum of masked copies, not a
  difference of running sums, so no large terms cancel);
- each chunk's own end state: ``sum_j exp(a_{j+1} + ... + a_Q) dt'_j x_j B_j^T``;
- state passing: the states entering every chunk from the chunks' end states and the initial
  state, as one matrix product with the chunk-level segment-sum decays (no loop over chunks);
- inter-chunk output: ``exp(a_1 + ... + a_i) S_in C_i``.

Every exponent is a sum of ``dt' A`` over a span, at most 0 when A <= 0, so nothing overflows.
No Python loop over tokens or chunks and no branch on the data, so autograd, ``torch.compile``
and ``torch.export`` (with a symbolic L) see one graph.
"""
import torch
import torch.nn.functional as F

from .reference import prepare_dt, skip_term


def segment_sum(a):
    """``out[..., i, j] = a[..., j+1] + ... + a[..., i]`` for i >= j, -inf above the diagonal
    (so its exp is the causal decay mask); a is (..., T)."""
    length = a.shape[-1]
    spans = a[..., None, :].expand(*a.shape, length).transpose(-1, -2)  # [..., i, j] = a_i
    below = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    sums = spans.masked_fill(~below, 0).cumsum(-2)
    causal = torch.ones(length, length, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~causal, float('-inf'))


def ssd_scan_chunked(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
                     initial_states=None, return_final_states=False, out_dtype=torch.float32):
    batch, length, heads, headdim = x.shape
    groups, state = B.shape[2], B.shape[3]
    per_group = heads // groups
    dt = prepare_dt(dt, dt_bias, dt_softplus)
    chunks = (length + chunk_size - 1) // chunk_size
    pad = chunks * chunk_size - length
    # Whole chunks: (batch, chunks, Q, ...); the padded steps have dt' = 0 (after softplus).
    x32, B32, C32 = (F.pad(t.float(), (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
    dt = F.pad(dt, (0, 0, 0, pad))
    x32 = x32.reshape(batch, chunks, chunk_size, groups, per_group, headdim)
    B32 = B32.reshape(batch, chunks, chunk_size, groups, state)
    C32 = C32.reshape(batch, chunks, chunk_size, groups, state)
    dt = dt.reshape(batch, chunks, chunk_size, groups, per_group)
    # Every operand below is contiguous in (batch, chunk, group, head in group, ...) order: a
    # product of tensors of mixed layouts takes a layout that compiled graphs with symbolic
    # shapes can mispredict (a view that fails at run time).
    a = (dt * A.float().reshape(groups, per_group)).permute(0, 1, 3, 4, 2).contiguous()
    a_sum = a.cumsum(-1)  # (b, c, g, hg, Q)
    dtx = (dt[..., None] * x32).permute(0, 1, 3, 4, 2, 5).contiguous()  # (b, c, g, hg, Q, p)
    B_rows = B32.permute(0, 1, 3, 2, 4).contiguous()[:, :, :, None]  # (b, c, g, 1, Q, N)
    C_rows = C32.permute(0, 1, 3, 2, 4).contiguous()[:, :, :, None]

    # Intra-chunk: (C B^T * Lmask) (dt' x).
    scores = torch.matmul(C_rows, B_rows.transpose(-1, -2))  # (b, c, g, 1, Q, Q)
    y_intra = torch.matmul(scores * torch.exp(segment_sum(a)), dtx)

    # Each chunk's end state, from its own steps only: (b, c, g, hg, p, N).
    to_end = torch.exp(a_sum[..., -1:] - a_sum)
    chunk_states = torch.matmul((dtx * to_end[..., None]).transpose(-1, -2), B_rows)

    # State passing: entering[z] = sum_{c < z} exp(a over chunks c+1..z-1) end[c] + decayed S0.
    if initial_states is None:
        start = chunk_states.new_zeros(batch, 1, groups, per_group, headdim, state)
    else:
        start = initial_states.float().reshape(batch, 1, groups, per_group, headdim, state)
    states = torch.cat([start, chunk_states], 1)  # (b, c+1, g, hg, p, N)
    chunk_totals = F.pad(a_sum[..., -1].permute(0, 2, 3, 1).contiguous(), (1, 0))
    chunk_decay = torch.exp(segment_sum(chunk_totals))  # (b, g, hg, c+1, c+1)
    passed = torch.einsum('bghzc,bcghpn->bzghpn', chunk_decay, states)
    entering, final = passed[:, :-1], passed[:, -1]

    # Inter-chunk: exp(a_1 + ... + a_i) S_in C_i.
    y_inter = torch.matmul(C_rows, entering.transpose(-1, -2)) * torch.exp(a_sum)[..., None]

    y = (y_intra + y_inter).permute(0, 1, 4, 2, 3, 5).reshape(batch, chunks * chunk_size,
                                                             heads, headdim)[:, :length]
    y = (y + skip_term(x, D)).to(out_dtype)
    if return_final_states:
        return y, final.reshape(batch, heads, headdim, state)
    return y
