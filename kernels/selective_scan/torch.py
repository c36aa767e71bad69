"""The ``torch`` backend: the selective scan in plain tensor ops, autograd- and export-safe.

The recurrence is ``common/chunked_recurrence.py``'s chunked form: all chunks at once, then the
chunks' end states chained, every step a multiplication by decays <= 1, one static graph for any
input (``torch.compile``, ``torch.export``).
"""
import torch

from ..common.chunked_recurrence import decays_and_drives, linear_recurrence
from ..common.scan_common import add_skip, prepare_delta


def selective_scan_chunked(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                           out_dtype=torch.float32):
    batch, dim, length = u.shape
    state = A.shape[1]
    decay, drive = decays_and_drives(u, prepare_delta(delta, delta_bias, delta_softplus), A, B)
    h = linear_recurrence(decay, drive)
    if state == 1:
        y = h.squeeze(3) * C.float()
    else:
        y = (h * C.float().unsqueeze(2)).sum(3)
    return add_skip(y.reshape(batch, dim, length), u, D, out_dtype)
