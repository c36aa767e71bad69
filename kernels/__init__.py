"""Scan kernels for VMamba-family models, importable as ``vmamba_kernels``.

``selective_scan`` is the one entry point for the SSM recurrence; it dispatches to a registered
backend (``reference``: the sequential oracle; ``torch``: the vectorised CPU/GPU path; later
``triton`` and ``cuda``). ``cross_scan``/``cross_merge`` turn a 2D map into the four scan routes
and back.
"""
from .cross_selective_scan import cross_selective_scan
from .cross_scan import NUM_ROUTES, SCAN_ORDERS, cross_merge, cross_scan
from .dispatch import (available_backends, register_backend, resolve_backend,
                       set_default_backend)
from .selective_scan import selective_scan

__all__ = [
    'selective_scan', 'cross_selective_scan', 'cross_scan', 'cross_merge', 'SCAN_ORDERS', 'NUM_ROUTES', 'register_backend',
    'resolve_backend', 'set_default_backend', 'available_backends'
]
