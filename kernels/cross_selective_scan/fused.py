"""A fused inference kernel's fake, backward and entry, for a channel-first kernel without a
backward kernel of its own (the 2D scan's C++ kernel, ``cross_selective_scan_2d/cpp.py``).

Such a kernel takes the per-route projections in pixel order and the route tables, and returns
what its reference returns (``fused_scan_2d_reference``). Its backward recomputes that reference
on the backend's own selective-scan operator and differentiates it (inference is what the kernel
is for; the composite serves training without recomputation). The 1D scan's C++ and Triton
kernels have backward kernels of their own (``cpp.py``, ``triton.py``).
"""
import torch

from ..scan_common import needs_grad
from .composite import project


# The fused operators' differentiable inputs come first: x, dt_low, dt_weight, A, B, C, D,
# delta_bias; route tables follow.
NUM_DIFFERENTIABLE = 8


def channel_first_output(x):
    """(B, C, L) for a (B, C, H, W) map: what the channel-first fused kernels return."""
    return x.shape[0], x.shape[1], x.shape[2] * x.shape[3]


def register_fused_operator(fused_op, selective_scan, reference):
    """Fake implementation and autograd of ``fused_op``; ``selective_scan(u, delta, A, B, C, D,
    delta_bias, delta_softplus)`` is the differentiable scan the backward recomputes with, through
    ``reference(*differentiable inputs, *tables, selective_scan)``. The first
    ``NUM_DIFFERENTIABLE`` inputs are differentiable; the float32 output is (B, C, L)."""

    @fused_op.register_fake
    def _(x, *rest):
        return x.new_empty(channel_first_output(x), dtype=torch.float32)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        differentiable = ctx.saved_tensors[:NUM_DIFFERENTIABLE]
        tables = ctx.saved_tensors[NUM_DIFFERENTIABLE:]
        wanted = [i for i, t in enumerate(differentiable)
                  if t is not None and ctx.needs_input_grad[i]]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(i in wanted) if t is not None else None
                      for i, t in enumerate(differentiable)]
            y = reference(*leaves, *tables, selective_scan)
            found = torch.autograd.grad(y, [leaves[i] for i in wanted], grad)
        grads = [None] * len(ctx.saved_tensors)
        for i, g in zip(wanted, found):
            grads[i] = g
        return tuple(grads)

    fused_op.register_autograd(backward, setup_context=setup)


def fused_entry(fused_op, tracked, tables):
    """A backend's cross_selective_scan: ``fused_op`` without autograd, else ``tracked`` (the
    backend's composite); ``tables(order, H, W, device)`` gives the kernel's tables."""

    def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                             channel_first):
        if needs_grad(x, x_proj_weight, dt_projs_weight, A, D, delta_bias):
            return tracked(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                           channel_first)
        batch, channels, height, width = x.shape
        x = x.contiguous()  # one copy if x came channels-last from a conv; the kernel reuses it
        dt_low, Bs, Cs = project(x.flatten(2), x_proj_weight, dt_projs_weight.shape[-1],
                                 A.shape[1])
        y = fused_op(x, dt_low, dt_projs_weight, A, Bs, Cs, D, delta_bias,
                     *tables(order, height, width, x.device))
        y = y.view(batch, channels, height, width)
        return y if channel_first else y.permute(0, 2, 3, 1)

    return cross_selective_scan
