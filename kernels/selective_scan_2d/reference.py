"""The 2D selective scan as its two sequential passes, written for obviousness. The test oracle.

Row pass left to right, one column at a time; then the column pass top to bottom, one row at a
time, with the same decays (see the contract in ``__init__``).
"""
import torch

from ..common.scan_common import add_skip, prepare_delta


def selective_scan_2d_reference(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                                height=None, width=None, out_dtype=torch.float32):
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    # (batch, dim, N, H, W): one grid of decays and drives per channel and state.
    grid = (batch, dim, state, height, width)
    B = B.float().repeat_interleave(dim // groups, dim=1)
    C = C.float().repeat_interleave(dim // groups, dim=1)
    step = delta[:, :, None, :]
    decay = torch.exp(step * A.float()[None, :, :, None]).reshape(grid)
    drive = (step * u.float()[:, :, None, :] * B).reshape(grid)

    rows = u.new_zeros(grid, dtype=torch.float32)
    g = u.new_zeros(batch, dim, state, height, dtype=torch.float32)
    for j in range(width):
        g = decay[..., j] * g + drive[..., j]
        rows[..., j] = g
    h = u.new_zeros(grid, dtype=torch.float32)
    column = u.new_zeros(batch, dim, state, width, dtype=torch.float32)
    for i in range(height):
        column = decay[..., i, :] * column + rows[..., i, :]
        h[..., i, :] = column
    y = (h.reshape(batch, dim, state, length) * C).sum(2)
    return add_skip(y, u, D, out_dtype)
