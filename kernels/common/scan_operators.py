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


def gradient_buffers(u, state, num_dblocks):
    """What a backward kernel writes, float32: du, ddelta, dA per batch element, dB and dC per
    block of channels, dD and ddelta_bias per batch element (zeros: absent ones stay so)."""
    batch, dim, length = u.shape
    float32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(batch, dim, length, **float32)
    return dict(du=du, ddelta=torch.empty_like(du), dA=torch.empty(batch, dim, state, **float32),
                dB_part=torch.empty(batch, num_dblocks, state, length, **float32),
                dC_part=torch.empty(batch, num_dblocks, state, length, **float32),
                dD=torch.zeros(batch, dim, **float32), dbias=torch.zeros(batch, dim, **float32))


def reduce_gradients(buffers, u, delta, B, C):
    """The seven gradients from ``gradient_buffers`` once the kernel ran: sums over the batch and
    over each group's channel blocks (blocks never straddle a group), input dtypes restored."""
    batch, groups, state, length = B.shape
    num_dblocks = buffers['dB_part'].shape[1]
    dB, dC = (buffers[name].view(batch, groups, num_dblocks // groups, state, length).sum(2)
              for name in ('dB_part', 'dC_part'))
    return (buffers['du'].to(u.dtype), buffers['ddelta'].to(delta.dtype), buffers['dA'].sum(0),
            dB.to(B.dtype), dC.to(C.dtype), buffers['dD'].sum(0), buffers['dbias'].sum(0))


def register_saved_state_autograd(forward_op, backward_op):
    """Autograd of ``forward_op(u, delta, A, B, C, D, delta_bias, *options) -> (y, state)``
    through ``backward_op(u, delta, A, B, C, D, delta_bias, state, grad_y, *options)``; the
    options (delta_softplus, and the grid of a 2D scan) are not differentiable."""

    def setup(ctx, inputs, output):
        u, delta, A, B, C, D, delta_bias, *options = inputs
        _, state = output
        ctx.options = options
        ctx.mark_non_differentiable(state)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, state)

    def backward(ctx, grad_y, grad_state):
        u, delta, A, B, C, D, delta_bias, state = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = backward_op(u, delta, A, B, C, D, delta_bias, state,
                                                        grad_y, *ctx.options)
        return (du, ddelta, dA, dB, dC, dD if D is not None else None,
                dbias if delta_bias is not None else None, *[None] * len(ctx.options))

    forward_op.register_autograd(backward, setup_context=setup)
