"""What the GPU selective-scan operators share (``triton.py``, ``cuda.py``).

Each is a pair of ``torch.library`` operators: a forward returning (y, saved state) and a backward
taking that state and returning the seven gradients (du, ddelta, dA, dB, dC, dD, ddelta_bias);
an operator cannot return None, so dD and ddelta_bias come back (as zeros) even when D or the
bias is absent, and the autograd formula drops them.
"""
import torch


def backward_fake(u, delta, A, B, C):
    """Shapes and dtypes of the backward operator's seven gradients."""
    dim, state = A.shape
    return (torch.empty_like(u, memory_format=torch.contiguous_format),
            torch.empty_like(delta, memory_format=torch.contiguous_format),
            u.new_empty(dim, state, dtype=torch.float32),
            torch.empty_like(B, memory_format=torch.contiguous_format),
            torch.empty_like(C, memory_format=torch.contiguous_format),
            u.new_empty(dim, dtype=torch.float32), u.new_empty(dim, dtype=torch.float32))


def register_saved_state_autograd(forward_op, backward_op):
    """Autograd of ``forward_op(u, delta, A, B, C, D, delta_bias, delta_softplus) -> (y, state)``
    through ``backward_op(u, delta, A, B, C, D, delta_bias, state, grad_y, delta_softplus)``."""

    def setup(ctx, inputs, output):
        u, delta, A, B, C, D, delta_bias, delta_softplus = inputs
        _, state = output
        ctx.delta_softplus = delta_softplus
        ctx.mark_non_differentiable(state)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, state)

    def backward(ctx, grad_y, grad_state):
        u, delta, A, B, C, D, delta_bias, state = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = backward_op(u, delta, A, B, C, D, delta_bias, state,
                                                        grad_y, ctx.delta_softplus)
        return (du, ddelta, dA, dB, dC, dD if D is not None else None,
                dbias if delta_bias is not None else None, None)

    forward_op.register_autograd(backward, setup_context=setup)
