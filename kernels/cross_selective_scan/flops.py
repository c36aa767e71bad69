"""The fused SS2D core's cost for ``torch.utils.flop_counter`` (conventions: see
``selective_scan/flops.py``).

The Triton kernel takes the route projections in pixel order and forms each route's delta
itself (dt_weight @ the low-rank part, per token), so its rule is the scan of every route's
channels plus that projection's multiply-adds, which the composite path counts as an einsum. The
C++ kernel is given its delta by a bmm, which the counter counts: its rule is the scan alone.
Every path gives the same count.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from ..common.route_kernel import route_scan_flops
from ..selective_scan.flops import selective_scan_macs
from . import cpp, triton  # noqa: F401  (they define the operators)


def cross_selective_scan_macs(batch, channels, length, routes, state, rank, with_skip=True):
    """Multiply-adds of a fused core: one scan of routes x channels, plus the delta projection
    (rank multiply-adds per route, channel and token)."""
    scans = selective_scan_macs(batch, routes * channels, length, state, with_skip=with_skip)
    return scans + batch * routes * channels * rank * length


def _low_rank_core_flops(x, projected, dt_weight, A, D, *rest, out_shape=None, **kwargs):
    batch, height, width, channels = x
    routes, _, rank = dt_weight
    return 2 * cross_selective_scan_macs(batch, channels, height * width, routes, A[1], rank,
                                         with_skip=D is not None)


register_flop_formula(torch.ops.vmamba.cross_selective_scan_triton)(_low_rank_core_flops)
register_flop_formula(torch.ops.vmamba.cross_selective_scan_cpp)(route_scan_flops)
