"""The ``torch`` backend of the 2D scan: both passes as ``linear_recurrence`` of the 1D torch
backend, along the rows and then along the columns. Plain tensor ops with a fixed chunk, so
autograd, ``torch.compile`` and ``torch.export`` see one static graph for any grid.
"""
import torch

from ..common.scan_common import add_skip, prepare_delta
from ..common.chunked_recurrence import decays_and_drives, linear_recurrence


def selective_scan_2d_vectorised(u, delta, A, B, C, D=None, delta_bias=None,
                                 delta_softplus=False, height=None, width=None,
                                 out_dtype=torch.float32):
    batch, dim, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    per_group = dim // groups
    decay, drive = decays_and_drives(u, prepare_delta(delta, delta_bias, delta_softplus), A, B)
    grid = (batch, groups, per_group, state, height, width)
    decay, drive = decay.reshape(grid), drive.reshape(grid)
    rows = linear_recurrence(decay, drive)
    h = linear_recurrence(decay.transpose(-1, -2), rows.transpose(-1, -2)).transpose(-1, -2)
    h = h.reshape(batch, groups, per_group, state, length)
    y = (h * C.float().unsqueeze(2)).sum(3)
    return add_skip(y.reshape(batch, dim, length), u, D, out_dtype)
