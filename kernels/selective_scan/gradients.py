"""Gradients of the selective scan in closed form, for kernels that give only the forward.

With a_t = exp(delta_t A), x_t = delta_t B_t u_t and h_t = a_t h_{t-1} + x_t, the adjoint state
g_t = dL/dx_t obeys g_t = C_t dy_t + a_{t+1} g_{t+1}: the same recurrence run backwards. Every
other gradient is a sum of products of g, h_{t-1} and the inputs. The two recurrences are the
only sequential work; ``recurrence(decay, drive, reverse)`` supplies them (the C++ kernel).
"""
import torch
import torch.nn.functional as F

from ..scan_common import biased_delta, delta_gradients


def selective_scan_gradients(grad_y, u, delta, A, B, C, D, delta_bias, delta_softplus,
                             recurrence):
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias) of ``selective_scan``; float32 except du,
    ddelta, dB, dC, which take their input's dtype. B, C are (batch, G, N, L)."""
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    raw = biased_delta(delta, delta_bias)
    step = F.softplus(raw) if delta_softplus else raw
    shape5 = (batch, groups, per_group, 1, length)
    step5, u5, dy5 = step.view(shape5), u.float().view(shape5), grad_y.float().view(shape5)
    A5 = A.float().view(1, groups, per_group, state, 1)
    B5, C5 = B.float().unsqueeze(2), C.float().unsqueeze(2)
    decay = torch.exp(step5 * A5)
    drive = step5 * u5 * B5
    h = recurrence(decay, drive, False)
    h_prev = F.pad(h[..., :-1], (1, 0))
    next_decay = F.pad(decay[..., 1:], (0, 1))
    g = recurrence(next_decay, C5 * dy5, True)
    grad_log_decay = g * h_prev * decay
    grad_step = (grad_log_decay * A5 + g * u5 * B5).sum(3)
    grad_u = (g * step5 * B5).sum(3)
    if D is not None:
        grad_u = grad_u + dy5.squeeze(3) * D.float().view(1, groups, per_group, 1)
    grad_B = (g * step5 * u5).sum(2)
    grad_C = (h * dy5).sum(2)
    grad_A = (grad_log_decay * step5).sum((0, 4)).reshape(dim, state)
    grad_D = (grad_y.float() * u.float()).sum((0, 2)) if D is not None else None
    grad_delta, grad_bias = delta_gradients(grad_step.reshape(batch, dim, length), raw, delta,
                                            delta_bias, delta_softplus)
    return (grad_u.reshape(batch, dim, length).to(u.dtype), grad_delta, grad_A,
            grad_B.to(B.dtype), grad_C.to(C.dtype), grad_D, grad_bias)
