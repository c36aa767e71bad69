"""The ``torch`` backend (and the GPU backends' form): every line laid out as a sequence, the
orientations as four groups of channels, scanned by a ``selective_scan`` backend.

``lines_as_sequences(backend)`` is the V2M stage of any backend that has no kernel of its own:
projections and delta in pixel order, then one gather per operand that turns the lines of the
orientations that run backwards around (``reversed_where``), the scan with the lines in the batch
dimension, and the gather back. With the ``torch`` selective scan it is tensor ops only, for
autograd, ``torch.compile`` and ``torch.export``.
"""
import torch

from ..common.lines import NUM_ORIENTATIONS, reverses_lines
from ..dispatch import implementation


def reversed_where(t, reverse, dim, axis=-1):
    """``t`` (any strides) copied contiguous in one pass, its axis ``axis`` reversed at the
    indices of ``dim`` where ``reverse`` (one bool per index) is True. (One gather beats a copy
    plus ``flip`` of the reversed half: torch's flip of a strided view is slow.)"""
    length = t.shape[axis]
    forward = torch.arange(length, device=t.device)
    order = torch.stack([forward.flip(0) if flipped else forward for flipped in reverse])
    shape = [1] * t.dim()
    shape[dim], shape[axis] = len(reverse), length
    if dim > axis % t.dim():
        order = order.t().contiguous()
    return torch.gather(t, axis, order.view(shape).expand(t.shape))


def lines_as_sequences(backend):
    """``v2m_scan`` run by ``backend``'s ``selective_scan`` (an operation without ``backend``
    runs its ``torch`` one: the dispatch's rule)."""

    def v2m_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, stage):
        # Looked up here, not when built: selective_scan may register after this operation.
        selective_scan = implementation('selective_scan', backend).fn
        rank, state = dt_projs_weight.shape[2], A.shape[1]
        if stage == 'column':  # (B, W, H, 4, C): the lines along axis 2 in both stages
            x = x.transpose(1, 2)
        batch, lines, tokens = x.shape[:3]
        channels = x.shape[-1]
        reverse = [reverses_lines(stage, o) for o in range(NUM_ORIENTATIONS)]

        def as_sequences(t):  # (B, lines, tokens, 4, X) -> (B, lines, 4, X, tokens)
            return reversed_where(t.permute(0, 1, 3, 4, 2), reverse, dim=2)

        weight = x_proj_weight.to(x.dtype)
        if stage == 'row':  # every orientation projects the one map
            projected = torch.einsum('bltc,krc->bltkr', x, weight)
            u = x.unsqueeze(3).expand(batch, lines, tokens, NUM_ORIENTATIONS, channels)
        else:
            projected = torch.einsum('bltkc,krc->bltkr', x, weight)
            u = x
        projected = as_sequences(projected)
        delta = torch.matmul(dt_projs_weight.to(x.dtype), projected[:, :, :, :rank])
        state_input = projected[:, :, :, rank:].reshape(-1, NUM_ORIENTATIONS, state, tokens)
        ones = torch.ones_like(state_input)
        B, C = (state_input, ones) if stage == 'row' else (ones, state_input)
        sequences = batch * lines
        y = selective_scan(as_sequences(u).view(sequences, -1, tokens),
                           delta.reshape(sequences, -1, tokens), A, B, C, D=D,
                           delta_bias=delta_bias, delta_softplus=True, out_dtype=torch.float32)
        y = y.view(batch, lines, NUM_ORIENTATIONS, channels, tokens)
        # (B, lines, tokens, 4, C), contiguous: the layout the stage-2 conv reads
        y = reversed_where(y.permute(0, 1, 4, 2, 3), reverse, dim=3, axis=2)
        if stage == 'row':
            return y
        return y.sum(3).transpose(1, 2)

    return v2m_scan
