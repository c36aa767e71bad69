"""The V2M stage's cost for ``torch.utils.flop_counter`` (conventions: see
``selective_scan/flops.py``).

The C++ kernel is given its delta by a bmm and its projections by a GEMM, which the counter
counts itself: its rule is the selective scan of every orientation's channels over every line,
9 B L (4 C) N plus the D skip, as the sequence form (``torch.py``) counts its ``selective_scan``.
The fixed ones of B or C are counted as the sequence form counts them: as operands.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from ..selective_scan.flops import selective_scan_macs
from . import cpp  # noqa: F401  (it defines the operator)


def _line_scan_flops(x, delta, projected, A, D, *rest, out_shape=None, **kwargs):
    routes, batch, length, channels = delta
    return 2 * selective_scan_macs(batch, routes * channels, length, A[1],
                                   with_skip=D is not None)


register_flop_formula(torch.ops.vmamba.v2m_scan_cpp)(_line_scan_flops)
