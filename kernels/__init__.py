"""Scan kernels for VMamba-family models, importable as ``vmamba_kernels``.

One folder per operation, found here at import (``pkgutil``: every subpackage but ``common`` and
``csrc``), so a new operation is one new folder and nothing else. Each folder has the same shape:

- ``__init__.py``: the public function(s) named in ``__all__`` (exported here), the written
  contract, the input check (``dispatch.register_input_check``, run on every call) and the
  backends' registration (``dispatch.register``). It does not use the torch library by that name:
  importing the ``torch`` backend file binds the package's attribute ``torch`` to it;
- ``reference.py``: the sequential (or plainly tensor-op) oracle, the ``reference`` backend;
- one file per backend, named after it: ``torch.py`` (always: the name rule's fallback, see
  ``dispatch``), and as it has them ``cpp.py``, ``triton.py``, ``cuda.py``;
- ``flops.py``: the FLOP counter's rules for its kernel operators;
- ``cases.py``: example inputs of a few sizes (``common/cases.py``), shared by the benchmark, the
  GPU backend check and the tests.

Shared helpers live in ``common/`` (extensions, route and line geometry, the scans' shared
prologue, the composite cores), the C++/CUDA sources in ``csrc/``. Operations today:
``selective_scan``, ``selective_scan_2d``, ``cross_scan`` / ``cross_merge`` (one folder, adjoint
pair), ``cross_selective_scan``, ``cross_selective_scan_2d``, ``depthwise_conv_silu``
(``depthwise_conv/``), ``add_layer_norm``, ``ssd_scan`` and ``v2m_scan``. The compiled and
Triton kernels are ``torch.library`` operators in the ``vmamba`` namespace. ``python -m
vmamba_kernels`` lists every operation's backends and whether each can run here.
"""
import importlib
import pkgutil
import sys

from .common import routes
from .common.routes import NUM_ROUTES, ORDER_CODES, SCAN_ORDERS, pixel_steps, route_pixels
from .dispatch import available_backends, resolve, resolve_backend_name, set_default_backend

# Not operation folders.
SHARED_FOLDERS = ('common', 'csrc')
# ``vmamba_kernels.routes`` keeps working for code that imported the geometry from there.
sys.modules[__name__ + '.routes'] = routes


def operation_packages(path=__path__, prefix=__name__ + '.'):
    """The names of the operation subpackages in ``path``, sorted."""
    return sorted(prefix + info.name for info in pkgutil.iter_modules(path)
                  if info.ispkg and info.name not in SHARED_FOLDERS)


def _load_operations():
    """Import every operation folder (registering its backends, input checks, FLOP rules and
    example inputs) and return their public names. A folder whose ``__all__`` names a function
    after the folder (``selective_scan``) exports the function: ``vmamba_kernels.selective_scan``
    is the function, while ``vmamba_kernels.selective_scan.reference`` stays importable as a
    module path (``sys.modules``)."""
    exported = {}
    for name in operation_packages():
        package = importlib.import_module(name)
        importlib.import_module(name + '.cases')
        for public in package.__all__:
            if public in exported:
                raise ImportError(f'{name} exports {public!r}, which {exported[public]} exports '
                                  f'already; rename one of them.')
            exported[public] = name
            globals()[public] = getattr(package, public)
    return sorted(exported)


__all__ = [
    'SCAN_ORDERS', 'ORDER_CODES', 'NUM_ROUTES', 'route_pixels', 'pixel_steps', 'resolve',
    'resolve_backend_name', 'set_default_backend', 'available_backends'
]
__all__.extend(_load_operations())
