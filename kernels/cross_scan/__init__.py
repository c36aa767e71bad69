"""Cross-scan and cross-merge: a 2D map as SS2D's routes for the selective scan, and back.

``cross_scan(x, order)`` reads a (B, C, H, W) map -- or (B, H, W, C) with
``channel_first=False`` -- along the ``NUM_ROUTES`` routes of ``order`` (see ``routes.py``) into
(B, NUM_ROUTES, C, H*W). ``cross_merge`` is its adjoint: it sums the routes back into place, so
each is the other's backward. Backends: tensor ops (every backend name but 'triton', any device)
and Triton (one pass each, CUDA).
"""
import os

from .. import triton_common
from ..dispatch import register, run
from ..routes import NUM_ROUTES, check_order
from . import tensor_ops, triton

_TENSOR_OP_BACKENDS = ('reference', 'torch', 'cpp', 'cuda')
_TRITON_DEVICES = ('cuda', 'cpu') if os.environ.get('TRITON_INTERPRET') == '1' else ('cuda', )
for _operation, _tensor_fn, _triton_fn in (
        ('cross_scan', tensor_ops.cross_scan_gather, triton.cross_scan_triton),
        ('cross_merge', tensor_ops.cross_merge_gather, triton.cross_merge_triton)):
    for _name in _TENSOR_OP_BACKENDS:
        register(_operation, _name, _tensor_fn, devices=('cpu', 'cuda'),
                 priority=0 if _name == 'torch' else None, description='tensor ops')
    register(_operation, 'triton', _triton_fn, devices=_TRITON_DEVICES, priority=1,
             auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
             description='Triton kernel')


def cross_scan(x, order='cross', channel_first=True, backend=None):
    """(B, C, H, W) -- or (B, H, W, C) with channel_first=False -- to routes (B, 4, C, H*W).

    ``backend``: a backend name or None (Triton on CUDA when available, else tensor ops).
    """
    check_order(order)
    if x.dim() != 4:
        raise ValueError(f'cross_scan expects a 4D map, got shape {tuple(x.shape)}.')
    return run('cross_scan', x.device.type, backend, x, order, channel_first)


def cross_merge(routes, height, width, order='cross', channel_first=True, backend=None):
    """Routes (B, 4, C, H*W) summed back to (B, C, H, W) -- or (B, H, W, C)."""
    check_order(order)
    if routes.dim() != 4 or routes.shape[1] != NUM_ROUTES or \
            routes.shape[3] != height * width:
        raise ValueError(f'cross_merge expects routes of shape (B, {NUM_ROUTES}, C, '
                         f'{height * width}), got {tuple(routes.shape)}.')
    return run('cross_merge', routes.device.type, backend, routes, height, width, order,
               channel_first)
