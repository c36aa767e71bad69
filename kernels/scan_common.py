"""Prologue and epilogue shared by the scan backends."""
import torch
import torch.nn.functional as F


def biased_delta(delta, delta_bias):
    """float32 delta with the bias added: what softplus takes."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float().unsqueeze(-1)
    return delta


def prepare_delta(delta, delta_bias, delta_softplus):
    """float32 delta with the bias added and softplus applied, as the contract says."""
    delta = biased_delta(delta, delta_bias)
    return F.softplus(delta) if delta_softplus else delta


def delta_gradients(grad_step, raw, delta, delta_bias, delta_softplus):
    """(ddelta in delta's dtype, ddelta_bias or None) from the gradient of the step size, back
    through softplus (whose derivative is sigmoid) and the bias; ``raw = biased_delta(...)``."""
    grad_raw = grad_step * torch.sigmoid(raw) if delta_softplus else grad_step
    grad_bias = grad_raw.sum((0, 2)) if delta_bias is not None else None
    return grad_raw.to(delta.dtype), grad_bias


def add_skip(y, u, D, out_dtype):
    if D is not None:
        y = y + u.float() * D.float().unsqueeze(-1)
    return y.to(out_dtype)


def needs_grad(*tensors):
    """Whether autograd will want gradients through an op on these tensors (None allowed)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
