"""Test oracles of the kernels: closed-form gradients, the fused kernels' references, and the
helper that feeds the C++ recurrence operator. Independent of the kernels they check: plain tensor
ops around a sequential recurrence.

Gradients of the selective scan in closed form (``selective_scan_gradients``): with
a_t = exp(delta_t A), x_t = delta_t B_t u_t and h_t = a_t h_{t-1} + x_t, the adjoint state
g_t = dL/dx_t obeys g_t = C_t dy_t + a_{t+1} g_{t+1}: the same recurrence run backwards. Every
other gradient is a sum of products of g, h_{t-1} and the inputs. The two recurrences are the
only sequential work; ``recurrence(decay, drive, reverse)`` supplies them (``recurrence_rows``,
``vmamba::linear_recurrence_cpp``, the C++ extension's recurrence).

Gradients of the 2D selective scan in closed form (``selective_scan_2d_gradients``): forward, per
channel and state, with a = exp(delta A) and x = delta B u on the H x W grid: g = rows(a, x)
(g[i,j] = a[i,j] g[i,j-1] + x[i,j]) and h = columns(a, g). The adjoints run the passes backwards
in the opposite order: gamma = dL/dg is the reverse column recurrence of C dy with the decays one
row down, beta = dL/dx the reverse row recurrence of gamma with the decays one column right, and
dL/da = gamma h[i-1,j] + beta g[i,j-1].

``pixel_major_scan_reference`` computes what the fused ``cross_selective_scan`` kernels compute
(the channels-last map, per-route projections given in pixel order, routes walked through the
route table) from a selective scan, and ``pixel_major_low_rank_reference`` the same with delta
formed from its low-rank projection (the Triton kernel).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from vmamba_kernels.common.composite import along_routes
from vmamba_kernels.common.cpu_extension import load_extension
from vmamba_kernels.common.scan_common import biased_delta


# The C++ extension's bare recurrence as an operator, with its own backward: the sequential work of
# the closed forms below, and an operator the tests check in its own right.
@torch.library.custom_op('vmamba::linear_recurrence_cpp', mutates_args=())
def linear_recurrence_cpp(decay: Tensor, drive: Tensor, reverse: bool) -> Tensor:
    """h_t = decay_t h_{t-1} + drive_t along the rows of float32 (rows, L) tensors (reverse:
    h_t = decay_t h_{t+1} + drive_t)."""
    return load_extension().linear_recurrence(decay.contiguous(), drive.contiguous(), reverse)


@linear_recurrence_cpp.register_fake
def _(decay, drive, reverse):
    return torch.empty_like(drive)


def _recurrence_setup(ctx, inputs, output):
    decay, _, reverse = inputs
    ctx.reverse = reverse
    ctx.save_for_backward(decay, output)


def _recurrence_backward(ctx, grad_h):
    decay, h = ctx.saved_tensors
    # The adjoint runs the other way: forward h_t = a_t h_{t-1} + b_t gives
    # grad_b_t = grad_h_t + a_{t+1} grad_b_{t+1}, and grad_a_t = grad_b_t h_{t-1}.
    if ctx.reverse:
        neighbour_decay = F.pad(decay[:, :-1], (1, 0))
        grad_drive = linear_recurrence_cpp(neighbour_decay, grad_h.contiguous(), False)
        return grad_drive * F.pad(h[:, 1:], (0, 1)), grad_drive, None
    neighbour_decay = F.pad(decay[:, 1:], (0, 1))
    grad_drive = linear_recurrence_cpp(neighbour_decay, grad_h.contiguous(), True)
    return grad_drive * F.pad(h[:, :-1], (1, 0)), grad_drive, None


linear_recurrence_cpp.register_autograd(_recurrence_backward, setup_context=_recurrence_setup)


def delta_gradients(grad_step, raw, delta, delta_bias, delta_softplus):
    """(ddelta in delta's dtype, ddelta_bias or None) from the gradient of the step size, back
    through softplus (whose derivative is sigmoid) and the bias; ``raw = biased_delta(...)``."""
    grad_raw = grad_step * torch.sigmoid(raw) if delta_softplus else grad_step
    grad_bias = grad_raw.sum((0, 2)) if delta_bias is not None else None
    return grad_raw.to(delta.dtype), grad_bias


def recurrence_rows(decay, drive, reverse):
    """``vmamba::linear_recurrence_cpp`` on tensors of any shape (the last dim is time)."""
    shape = drive.shape
    rows = decay.expand(shape).reshape(-1, shape[-1]).float()
    return linear_recurrence_cpp(rows, drive.reshape(-1, shape[-1]).float(), reverse).view(shape)


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


def pixel_major_scan_reference(x, delta, projected, A, D, delta_bias, pixels, selective_scan):
    """What the channels-last fused kernel returns: (B, H, W, C) float32, routes summed in place.

    x: (B, H, W, C); delta: (routes, B, L, C) before its bias; projected: (B, L, routes, R + 2N),
    each pixel's route projections (delta rank R, then B, then C); all in pixel order.
    """
    batch, height, width, channels = x.shape
    routes, length = pixels.shape
    state = A.shape[1]
    rank = projected.shape[-1] - 2 * state
    u = x.reshape(batch, 1, length, channels).transpose(2, 3)
    u = along_routes(u.expand(batch, routes, channels, length), pixels)
    delta = along_routes(delta.permute(1, 0, 3, 2), pixels)
    Bs, Cs = (along_routes(t.permute(0, 2, 3, 1), pixels)
              for t in projected[..., rank:].split([state, state], dim=-1))
    ys = selective_scan(u.reshape(batch, -1, length), delta.reshape(batch, -1, length), A, Bs, Cs,
                        D, delta_bias, True)
    steps = torch.argsort(pixels, dim=-1)
    y = along_routes(ys.view(batch, routes, channels, length).float(), steps).sum(1)
    return y.transpose(1, 2).reshape(batch, height, width, channels)


def pixel_major_low_rank_reference(x, projected, dt_weight, A, D, delta_bias, pixels,
                                   selective_scan):
    """What the Triton kernel returns: ``pixel_major_scan_reference`` with each route's delta
    formed from the low-rank part of its projections, dt_weight (routes, C, R) @ projected[..., :R].
    """
    rank = dt_weight.shape[2]
    delta = torch.einsum('blkr,kcr->kblc', projected[..., :rank], dt_weight)
    return pixel_major_scan_reference(x, delta, projected, A, D, delta_bias, pixels,
                                      selective_scan)
