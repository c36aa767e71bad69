"""Cross-scan and cross-merge: a 2D map as SS2D's routes for the selective scan, and back.

Two operations in one folder, each the other's adjoint (their Triton kernels are each other's
backward). ``cross_scan(x, order)`` reads a (B, C, H, W) map -- or (B, H, W, C) with
``channel_first=False`` -- along the ``NUM_ROUTES`` routes of ``order`` (see
``common/routes.py``) into (B, NUM_ROUTES, C, H*W). ``cross_merge`` sums the routes back into
place. Backends: ``torch`` (gathers along the route tables, any device; ``reference`` is the same
gathers, exact and obvious) and ``triton`` (one pass each, CUDA). Other backend names run the
``torch`` gathers (the dispatch's rule for names an operation lacks).
"""
from ..common import triton_common
from ..common.routes import NUM_ROUTES, check_order
from ..dispatch import register, register_input_check, run
from . import flops, reference, triton  # noqa: F401  (flops: why there is no rule)
from . import torch as torch_backend

__all__ = ['cross_scan', 'cross_merge']

for _operation, _reference_fn, _torch_fn, _triton_fn in (
        ('cross_scan', reference.cross_scan_reference, torch_backend.cross_scan_gather,
         triton.cross_scan_triton),
        ('cross_merge', reference.cross_merge_reference, torch_backend.cross_merge_gather,
         triton.cross_merge_triton)):
    register(_operation, 'reference', _reference_fn, devices=('cpu', 'cuda'),
             description='tensor ops')
    register(_operation, 'torch', _torch_fn, devices=('cpu', 'cuda'), priority=0,
             description='tensor ops')
    register(_operation, 'triton', _triton_fn, devices=triton_common.triton_devices(),
             priority=1, auto_devices=('cuda', ),
             unavailable_reason=triton_common.unavailable_reason, description='Triton kernel')


def check_cross_scan_inputs(x, order='cross', channel_first=True):
    check_order(order)
    if x.dim() != 4:
        raise ValueError(f'cross_scan expects a 4D map, got shape {tuple(x.shape)}.')


def check_cross_merge_inputs(routes, height, width, order='cross', channel_first=True):
    check_order(order)
    if routes.dim() != 4 or routes.shape[1] != NUM_ROUTES or \
            routes.shape[3] != height * width:
        raise ValueError(f'cross_merge expects routes of shape (B, {NUM_ROUTES}, C, '
                         f'{height * width}), got {tuple(routes.shape)}.')


register_input_check('cross_scan', check_cross_scan_inputs)
register_input_check('cross_merge', check_cross_merge_inputs)


def cross_scan(x, order='cross', channel_first=True, backend=None):
    """(B, C, H, W) -- or (B, H, W, C) with channel_first=False -- to routes (B, 4, C, H*W).

    ``backend``: a backend name or None (Triton on CUDA when available, else tensor ops).
    """
    return run('cross_scan', x.device.type, backend, x, order, channel_first)


def cross_merge(routes, height, width, order='cross', channel_first=True, backend=None):
    """Routes (B, 4, C, H*W) summed back to (B, C, H, W) -- or (B, H, W, C)."""
    return run('cross_merge', routes.device.type, backend, routes, height, width, order,
               channel_first)
