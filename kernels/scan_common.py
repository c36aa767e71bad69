"""Prologue and epilogue shared by the scan backends."""
import torch
import torch.nn.functional as F


def prepare_delta(delta, delta_bias, delta_softplus):
    """float32 delta with the bias added and softplus applied, as the contract says."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float().unsqueeze(-1)
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def add_skip(y, u, D, out_dtype):
    if D is not None:
        y = y + u.float() * D.float().unsqueeze(-1)
    return y.to(out_dtype)


def needs_grad(*tensors):
    """Whether autograd will want gradients through an op on these tensors (None allowed)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
