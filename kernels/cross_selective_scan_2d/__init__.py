"""SS2D's scan core with 2DMamba's 2D scan on every route (2DVMamba).

``cross_selective_scan_2d`` takes what ``cross_selective_scan`` takes (the same contract) and
computes the same projections and merge, but scans each route as a 2D grid
(``common/composite.py``'s ``route_grid``): routes of a row-major walk as H x W, column-major ones
as W x H. On the ``cpp`` backend without autograd one C++ pass walks the four routes in place;
otherwise the backend's ``cross_scan``, ``selective_scan_2d`` and ``cross_merge`` run in turn.
"""
from ..common import triton_common
from ..common.composite import check_core_inputs
from ..common.routes import check_order
from ..dispatch import register, register_input_check, run
from . import cpp, flops, reference, triton  # noqa: F401  (flops: the FLOP counter's formula)
from . import torch as torch_backend

__all__ = ['cross_selective_scan_2d']

OPERATION = 'cross_selective_scan_2d'
register(OPERATION, 'reference', reference.cross_selective_scan_2d_reference,
         devices=('cpu', 'cuda'),
         description='sequential 2D scan between tensor-op cross-scan/merge')
register(OPERATION, 'torch', torch_backend.cross_selective_scan_2d_torch, devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.cross_selective_scan_2d_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpp.unavailable_reason,
         description='C++ kernel, fused with cross-scan/merge without autograd')
register(OPERATION, 'triton', triton.cross_selective_scan_2d_triton,
         devices=triton_common.triton_devices(), priority=2, auto_devices=('cuda', ),
         unavailable_reason=triton_common.unavailable_reason,
         description='Triton 2D scan between Triton cross-scan/merge')


def check_inputs(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order='cross',
                 channel_first=True):
    """``cross_selective_scan``'s contract, as every backend receives it."""
    check_order(order)
    check_core_inputs(OPERATION, x, x_proj_weight, dt_projs_weight, A)


register_input_check(OPERATION, check_inputs)


def cross_selective_scan_2d(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order='cross',
                            channel_first=True, backend=None):
    """Route-wise 2D selective scan of a (B, C, H, W) map; float32 out in the chosen layout.

    Arguments as ``cross_selective_scan``'s (delta gets softplus).
    """
    return run(OPERATION, x.device.type, backend, x, x_proj_weight, dt_projs_weight, A, D,
               delta_bias, order, channel_first)
