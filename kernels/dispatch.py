"""Choosing the selective-scan backend: one place, logged once, overridable.

Precedence: the ``backend=`` argument of a call, then ``set_default_backend`` (what a config's
``scan_backend`` sets), then the ``VMAMBA_SCAN_BACKEND`` environment variable, then the automatic
choice by device. The automatic choice takes the highest-priority backend that is available for
the tensor's device; it never picks the sequential reference, nor on a GPU the PyTorch path.
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

logger = logging.getLogger('vmamba_kernels')
if not logger.hasHandlers():
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter('[vmamba_kernels] %(message)s'))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

ENV_VAR = 'VMAMBA_SCAN_BACKEND'


@dataclass
class Backend:
    name: str
    fn: Callable
    devices: Tuple[str, ...]
    # Higher wins in the automatic choice; None means "only when asked for by name".
    priority: Optional[int]
    # Devices where the automatic choice may take it (default: all of ``devices``).
    auto_devices: Tuple[str, ...]
    # Returns None when usable, else the reason it is not (shown to the user).
    unavailable_reason: Callable[[], Optional[str]]
    # Optional inference kernel for SS2D's whole four-route scan (see cross_selective_scan.py).
    fused_cross_scan: Optional[Callable] = None


_BACKENDS = {}
_default_backend = None
_logged = set()


def register_backend(name, fn, devices, priority=None, unavailable_reason=lambda: None,
                     fused_cross_scan=None, auto_devices=None):
    """Make ``fn`` selectable as ``backend=name`` (and automatically, given a priority)."""
    auto = tuple(devices) if auto_devices is None else tuple(auto_devices)
    _BACKENDS[name] = Backend(name, fn, tuple(devices), priority, auto, unavailable_reason,
                              fused_cross_scan)


def available_backends():
    """Names of the registered backends that can run on this machine."""
    return [name for name, b in _BACKENDS.items() if b.unavailable_reason() is None]


def set_default_backend(name):
    """Force a backend for every call without an explicit ``backend=`` (None: automatic)."""
    global _default_backend
    if name is not None:
        _check_known(name, 'set_default_backend')
    _default_backend = name


def _check_known(name, source):
    if name not in _BACKENDS:
        raise ValueError(f'Unknown selective-scan backend {name!r} (from {source}); '
                         f'choose one of {sorted(_BACKENDS)}.')


def _named(name, source, device_type):
    _check_known(name, source)
    backend = _BACKENDS[name]
    reason = backend.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f'Selective-scan backend {name!r} (from {source}) is not available: '
                           f'{reason}')
    if device_type not in backend.devices:
        raise RuntimeError(f'Selective-scan backend {name!r} (from {source}) does not run on '
                           f'{device_type} tensors; it supports {list(backend.devices)}.')
    return backend, f'requested by {source}'


def resolve_backend(device_type, requested=None):
    """Return ``(Backend, reason)`` for tensors on ``device_type`` ('cpu', 'cuda', ...)."""
    if requested is not None:
        return _named(requested, "the call's backend= argument", device_type)
    if _default_backend is not None:
        return _named(_default_backend, 'set_default_backend / the config', device_type)
    if os.environ.get(ENV_VAR):
        return _named(os.environ[ENV_VAR], f'the {ENV_VAR} environment variable', device_type)
    # Best first, and stop at the first that works: availability checks may build a kernel.
    eligible = sorted((b for b in _BACKENDS.values()
                       if b.priority is not None and device_type in b.auto_devices),
                      key=lambda b: -b.priority)
    skipped = []
    for backend in eligible:
        reason = backend.unavailable_reason()
        if reason is None:
            why = f'automatic choice for {device_type}'
            if skipped:
                why += ' (skipped ' + '; '.join(skipped) + ')'
            return backend, why
        skipped.append(f'{backend.name}: {reason}')
    raise RuntimeError(
        f'No selective-scan kernel for {device_type} tensors. ' +
        ('; '.join(skipped) + '. ' if skipped else '') +
        'Install Triton (pip install triton) or build the CUDA extension (see README, '
        "'Scan backends'); or pass backend='torch' (vectorised PyTorch, slow on a GPU) or "
        "backend='reference' (a loop over tokens) to run a slow path on purpose.")


def log_choice_once(backend, reason, device_type):
    key = (backend.name, device_type, reason)
    if key not in _logged:
        _logged.add(key)
        logger.info('selective_scan on %s uses the %r backend: %s', device_type, backend.name,
                    reason)
