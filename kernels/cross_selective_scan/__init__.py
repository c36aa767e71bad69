"""SS2D's scan core: project a 2D map onto its routes, scan each, merge them back.

``cross_selective_scan`` is what a VSS block calls. On a backend with a fused kernel (``cpp`` on
the CPU, ``triton`` on GPUs) the map is projected once in pixel order and the kernel walks the
routes in place, for inference and training alike (each has a backward kernel of its own).
Otherwise the backend's ``cross_scan``, ``selective_scan`` and ``cross_merge`` run in turn
(``composite.py``). All compute the same function.
"""
import os

from .. import cpu_extension, cuda_extension, triton_common
from ..dispatch import register, run
from ..routes import NUM_ROUTES, check_order
from ..selective_scan import chunked
from . import cpp, flops, triton  # noqa: F401  (flops: the FLOP counter's rule)
from .composite import composite

OPERATION = 'cross_selective_scan'
register(OPERATION, 'reference', composite('reference'), devices=('cpu', 'cuda'),
         description='sequential selective scan between tensor-op cross-scan/merge')
# Its own routes (flips and transposes) and a time-first chunk layout: it exports to ONNX.
register(OPERATION, 'torch', chunked.cross_selective_scan_chunked, devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.cross_selective_scan_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpu_extension.unavailable_reason,
         description='C++ kernel pair on the channels-last map, routes walked in place')
register(OPERATION, 'triton', triton.cross_selective_scan_triton,
         devices=('cuda', 'cpu') if os.environ.get('TRITON_INTERPRET') == '1' else ('cuda', ),
         priority=2, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel pair on the pixel-major map, routes walked in place')
register(OPERATION, 'cuda', composite('cuda'), devices=('cuda', ), priority=1,
         auto_devices=('cuda', ), unavailable_reason=cuda_extension.unavailable_reason,
         description='CUDA C++ selective scan between tensor-op cross-scan/merge')


def check_core_inputs(operation, x, x_proj_weight, dt_projs_weight, A):
    """The map and route weights against each other; errors name ``operation`` and the input."""
    if x.dim() != 4:
        raise ValueError(f'{operation} expects a (B, C, H, W) map, got shape {tuple(x.shape)}.')
    channels = x.shape[1]
    expected = {'x_proj_weight': (NUM_ROUTES, None, channels),
                'dt_projs_weight': (NUM_ROUTES, channels, None),
                'A': (NUM_ROUTES * channels, None)}
    for name, t in (('x_proj_weight', x_proj_weight), ('dt_projs_weight', dt_projs_weight),
                    ('A', A)):
        shape = expected[name]
        if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
            raise ValueError(f'{operation}: {name} has shape {tuple(t.shape)}, expected '
                             f"{tuple('*' if s is None else s for s in shape)} for {channels} "
                             f'channels.')


def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order='cross',
                         channel_first=True, backend=None):
    """Route-wise selective scan of a (B, C, H, W) map; float32 out in the chosen layout.

    x_proj_weight: (routes, R + 2N, C) route projections to (delta rank R, B, C);
    dt_projs_weight: (routes, C, R); A: (routes * C, N); D, delta_bias: (routes * C,); delta gets
    softplus. ``channel_first=False`` returns (B, H, W, C).
    """
    check_order(order)
    check_core_inputs(OPERATION, x, x_proj_weight, dt_projs_weight, A)
    return run(OPERATION, x.device.type, backend, x, x_proj_weight, dt_projs_weight, A, D,
               delta_bias, order, channel_first)
