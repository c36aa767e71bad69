"""SS2D's scan core: project a 2D map onto its routes, scan each, merge them back.

``cross_selective_scan`` is what a VSS block calls. On a backend with a fused kernel (``cpp`` on
the CPU, ``triton`` on GPUs) the map is projected once in pixel order and the kernel walks the
routes in place, for inference and training alike (each has a backward kernel of its own).
The ``reference`` and ``cuda`` backends run that backend's ``cross_scan``, ``selective_scan`` and
``cross_merge`` in turn (``common/composite.py``); ``torch`` is its own tensor-op form, which
exports to ONNX. All compute the same function.

Contract: x (B, C, H, W); x_proj_weight (routes, R + 2N, C), the route projections to (delta
rank R, B, C); dt_projs_weight (routes, C, R); A (routes * C, N); D, delta_bias (routes * C,) or
None; delta gets softplus; ``order`` one of ``SCAN_ORDERS``. Returns float32 (B, C, H, W), or
(B, H, W, C) with ``channel_first=False``.
"""
from ..common import cpu_extension, cuda_extension, triton_common
from ..common.composite import check_core_inputs, route_parameters
from ..common.routes import check_order
from ..dispatch import register, register_input_check, run
from . import cpp, cuda, flops, reference, triton  # noqa: F401  (flops: the FLOP counter's rule)
from . import torch as torch_backend

# route_parameters: the contract's per-route delta, B and C of routes in tensor form, for
# analyses that need the scan's own inputs (SS2D's scan attention).
__all__ = ['cross_selective_scan', 'route_parameters']

OPERATION = 'cross_selective_scan'
register(OPERATION, 'reference', reference.cross_selective_scan_reference,
         devices=('cpu', 'cuda'),
         description='sequential selective scan between tensor-op cross-scan/merge')
# Its own routes (flips and transposes) and a time-first chunk layout: it exports to ONNX.
register(OPERATION, 'torch', torch_backend.cross_selective_scan_chunked, devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.cross_selective_scan_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpu_extension.unavailable_reason,
         description='C++ kernel pair on the channels-last map, routes walked in place')
register(OPERATION, 'triton', triton.cross_selective_scan_triton,
         devices=triton_common.triton_devices(), priority=2, auto_devices=('cuda', ),
         unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel pair on the pixel-major map, routes walked in place')
register(OPERATION, 'cuda', cuda.cross_selective_scan_cuda, devices=('cuda', ), priority=1,
         auto_devices=('cuda', ), unavailable_reason=cuda_extension.unavailable_reason,
         description='CUDA C++ selective scan between tensor-op cross-scan/merge')


def check_inputs(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order='cross',
                 channel_first=True):
    """The contract above, as every backend receives it."""
    check_order(order)
    check_core_inputs(OPERATION, x, x_proj_weight, dt_projs_weight, A)


register_input_check(OPERATION, check_inputs)


def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order='cross',
                         channel_first=True, backend=None):
    """Route-wise selective scan of a (B, C, H, W) map; float32 out in the chosen layout (see the
    module docstring)."""
    return run(OPERATION, x.device.type, backend, x, x_proj_weight, dt_projs_weight, A, D,
               delta_bias, order, channel_first)
