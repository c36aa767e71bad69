"""The 2D scan's cost, attached to its kernel operators for ``torch.utils.flop_counter``.

The official tables count multiply-adds (fvcore's convention): the 1D scan costs
9 B L D N (+ B D L for the D skip), and 2DMamba adds 6 B L D N for the column pass. Torch's
counter counts a multiply-add as two FLOPs (its matmul rule is 2 m n k), so the formulas
registered here give twice the multiply-adds, and a counter reporting multiply-adds halves every
op alike.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from . import cpp, triton  # noqa: F401  (they define the operators)


def selective_scan_2d_macs(batch, dim, length, state, with_skip=True):
    """Multiply-adds of one 2D scan as the official tables count them."""
    return 15 * batch * length * dim * state + (batch * dim * length if with_skip else 0)


def _scan_flops(u, delta, A, B, C, D, *rest, out_shape=None, **kwargs):
    batch, dim, length = u
    return 2 * selective_scan_2d_macs(batch, dim, length, A[1], with_skip=D is not None)


register_flop_formula([torch.ops.vmamba.selective_scan_2d_cpp,
                       torch.ops.vmamba.selective_scan_2d_triton])(_scan_flops)
