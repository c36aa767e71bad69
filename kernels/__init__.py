"""Scan kernels for VMamba-family models, importable as ``vmamba_kernels``.

Organised by operation, one folder each, each with its public function, its sequential
reference and its backends, all registered in one dispatch (``dispatch.py``):

- ``selective_scan``: the SSM recurrence (backends reference, torch, cpp, triton, cuda);
- ``cross_scan`` / ``cross_merge``: a 2D map as SS2D's routes and back (``routes.py`` defines the
  routes once for every backend);
- ``cross_selective_scan``: SS2D's whole scan core, fused on the backends that have a kernel for
  it;
- ``selective_scan_2d``: 2DMamba's 2D scan of an H x W grid (a row pass, then a column pass);
- ``cross_selective_scan_2d``: SS2D's core with that 2D scan on every route (2DVMamba);
- ``depthwise_conv_silu``: SS2D's depthwise conv and SiLU before its scan, fused on the CPU;
- ``add_layer_norm``: a VSS block's residual add and the LayerNorm after it, fused on GPUs.

The compiled and Triton kernels are ``torch.library`` operators in the ``vmamba`` namespace.
"""
from .add_layer_norm import add_layer_norm
from .cross_scan import cross_merge, cross_scan
from .cross_selective_scan import cross_selective_scan
from .cross_selective_scan_2d import cross_selective_scan_2d
from .depthwise_conv import depthwise_conv_silu
from .dispatch import available_backends, resolve, resolve_backend_name, set_default_backend
from .routes import NUM_ROUTES, ORDER_CODES, SCAN_ORDERS, pixel_steps, route_pixels
from .selective_scan import selective_scan
from .selective_scan_2d import selective_scan_2d

__all__ = [
    'selective_scan', 'cross_selective_scan', 'selective_scan_2d', 'cross_selective_scan_2d',
    'cross_scan', 'cross_merge', 'depthwise_conv_silu', 'add_layer_norm', 'SCAN_ORDERS',
    'ORDER_CODES', 'NUM_ROUTES', 'route_pixels', 'pixel_steps', 'resolve',
    'resolve_backend_name', 'set_default_backend', 'available_backends'
]
