"""Sequential V2M stage: one token of a line at a time, written for obviousness. The test
oracle."""
import torch
import torch.nn.functional as F

from ..common.lines import NUM_ORIENTATIONS, reverses_lines


def v2m_scan_reference(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, stage):
    rank = dt_projs_weight.shape[2]
    x32 = x.float()
    channels = x.shape[-1]
    outputs = []
    for o in range(NUM_ORIENTATIONS):
        rows = slice(o * channels, (o + 1) * channels)
        u = x32 if stage == 'row' else x32[..., o, :]  # (B, H, W, C)
        if stage == 'column':  # lines along H: make them the W axis of a transposed map
            u = u.transpose(1, 2)
        projected = u @ x_proj_weight[o].float().t()  # (B, lines, tokens, R + N)
        delta = projected[..., :rank] @ dt_projs_weight[o].float().t()
        if delta_bias is not None:
            delta = delta + delta_bias[rows].float()
        delta = F.softplus(delta)
        state_input = projected[..., rank:]  # B (row stage) or C (column stage)
        a, skip = A[rows].float(), (D[rows].float() if D is not None else None)
        h = u.new_zeros(u.shape[0], u.shape[1], channels, A.shape[1])
        y = torch.empty_like(u)
        tokens = range(u.shape[2])
        for t in (reversed(tokens) if reverses_lines(stage, o) else tokens):
            step, ut, st = delta[:, :, t], u[:, :, t], state_input[:, :, t]
            drive = (step * ut)[..., None]
            h = torch.exp(step[..., None] * a) * h + (drive * st[:, :, None] if stage == 'row'
                                                      else drive)
            yt = h.sum(-1) if stage == 'row' else (h * st[:, :, None]).sum(-1)
            y[:, :, t] = yt + (skip * ut if skip is not None else 0)
        outputs.append(y if stage == 'row' else y.transpose(1, 2))
    if stage == 'row':
        return torch.stack(outputs, dim=3)
    return sum(outputs)
