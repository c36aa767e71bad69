"""Gradients of the 2D selective scan in closed form, for kernels that give only the forward.

Forward, per channel and state, with a = exp(delta A) and x = delta B u on the H x W grid:
g = rows(a, x) (g[i,j] = a[i,j] g[i,j-1] + x[i,j]) and h = columns(a, g). The adjoints run the
passes backwards in the opposite order: gamma = dL/dg is the reverse column recurrence of
C dy with the decays one row down, beta = dL/dx the reverse row recurrence of gamma with the
decays one column right, and dL/da = gamma h[i-1,j] + beta g[i,j-1]. The four recurrences are the
only sequential work; ``recurrence(decay, drive, reverse)`` (along the last dim) supplies them.
"""
import torch
import torch.nn.functional as F

from ..scan_common import biased_delta, delta_gradients


def _along_columns(recurrence, decay, drive, reverse):
    """``recurrence`` down the columns of (..., H, W) grids."""
    return recurrence(decay.transpose(-1, -2), drive.transpose(-1, -2),
                      reverse).transpose(-1, -2)


def selective_scan_2d_gradients(grad_y, u, delta, A, B, C, D, delta_bias, delta_softplus,
                                height, width, recurrence):
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias) of ``selective_scan_2d``; float32 except du,
    ddelta, dB, dC, which take their input's dtype. B, C are (batch, G, N, L)."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    raw = biased_delta(delta, delta_bias)
    step = F.softplus(raw) if delta_softplus else raw
    # (batch, groups, channels per group, N, H, W); B and C broadcast over a group's channels.
    flat = (batch, groups, per_group, 1, height, width)
    step6, u6, dy6 = step.view(flat), u.float().view(flat), grad_y.float().view(flat)
    A6 = A.float().view(1, groups, per_group, state, 1, 1)
    B6 = B.float().view(batch, groups, 1, state, height, width)
    C6 = C.float().view(batch, groups, 1, state, height, width)
    decay = torch.exp(step6 * A6)
    drive = step6 * u6 * B6
    rows = recurrence(decay, drive.expand_as(decay), False)
    h = _along_columns(recurrence, decay, rows, False)

    below = F.pad(decay[..., 1:, :], (0, 0, 0, 1))
    right = F.pad(decay[..., 1:], (0, 1))
    gamma = _along_columns(recurrence, below, (C6 * dy6).expand_as(decay), True)
    beta = recurrence(right, gamma, True)
    h_up = F.pad(h[..., :-1, :], (0, 0, 1, 0))
    rows_left = F.pad(rows[..., :-1], (1, 0))
    grad_log_decay = (gamma * h_up + beta * rows_left) * decay

    grad_step = (grad_log_decay * A6 + beta * u6 * B6).sum(3)
    grad_u = (beta * step6 * B6).sum(3)
    if D is not None:
        grad_u = grad_u + dy6.squeeze(3) * D.float().view(1, groups, per_group, 1, 1)
    grad_B = (beta * step6 * u6).sum(2)
    grad_C = (h * dy6).sum(2)
    grad_A = (grad_log_decay * step6).sum((0, 4, 5)).reshape(dim, state)
    grad_D = (grad_y.float() * u.float()).sum((0, 2)) if D is not None else None
    grad_delta, grad_bias = delta_gradients(grad_step.reshape(batch, dim, length), raw, delta,
                                            delta_bias, delta_softplus)
    return (grad_u.reshape(batch, dim, length).to(u.dtype), grad_delta, grad_A,
            grad_B.reshape(batch, groups, state, length).to(B.dtype),
            grad_C.reshape(batch, groups, state, length).to(C.dtype), grad_D, grad_bias)
