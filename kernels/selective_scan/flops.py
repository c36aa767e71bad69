"""The 1D scan's cost, attached to its forward operators for ``torch.utils.flop_counter``.

The official VMamba tables count multiply-adds (fvcore's convention) and give the selective scan
9 B L D N, plus B D L for the D skip when there is one (mamba_ssm's rule, mamba issue #110;
D counts every channel scanned, so all four routes of SS2D). Torch's counter counts a multiply-add
as two FLOPs (its matmul rule is 2 m n k), so the formulas registered here give twice the
multiply-adds, and a counter that reports multiply-adds halves every operator alike.

Only the forward operators carry the rule: the ``*_backward`` operators run in backward passes
only, which the official tables do not count.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from . import cpp, cuda, triton  # noqa: F401  (they define the operators)


def selective_scan_macs(batch, dim, length, state, with_skip=True):
    """Multiply-adds of one selective scan of ``dim`` channels as the official tables count
    them: 9 B L D N, plus B D L when the scan adds the D skip."""
    return 9 * batch * length * dim * state + (batch * dim * length if with_skip else 0)


def _scan_flops(u, delta, A, B, C, D, *rest, out_shape=None, **kwargs):
    batch, dim, length = u
    return 2 * selective_scan_macs(batch, dim, length, A[1], with_skip=D is not None)


register_flop_formula([torch.ops.vmamba.selective_scan_cpp,
                       torch.ops.vmamba.selective_scan_triton,
                       torch.ops.vmamba.selective_scan_cuda])(_scan_flops)
