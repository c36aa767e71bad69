"""The fused 2D core's cost for ``torch.utils.flop_counter`` (conventions: see
``selective_scan_2d/flops.py``)."""
import torch
from torch.utils.flop_counter import register_flop_formula

from ..selective_scan_2d.flops import selective_scan_2d_macs
from . import cpp  # noqa: F401  (it defines the operator)


def _fused_core_flops(x, dt_low, dt_weight, A, B, C, D, *rest, out_shape=None, **kwargs):
    """Every route's 2D scan plus the delta projection the kernel forms per token."""
    batch, channels, height, width = x
    routes, _, rank = dt_weight
    length = height * width
    scans = routes * selective_scan_2d_macs(batch, channels, length, A[1],
                                            with_skip=D is not None)
    return 2 * (scans + batch * routes * channels * rank * length)


register_flop_formula(torch.ops.vmamba.cross_selective_scan_2d_cpp)(_fused_core_flops)
