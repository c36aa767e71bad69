"""One dispatch for every scan operation, keyed by (operation, backend).

An operation (``selective_scan``, ``cross_scan``, ``cross_merge``, ``cross_selective_scan``, and
whatever later folders add) registers one implementation per backend name. Backend names are
shared across operations, so one choice ('cpp', 'triton', ...) selects a consistent set of
kernels for a whole block.

Precedence when choosing: the ``backend=`` argument of a call, then ``set_default_backend`` (what
a config's ``scan_backend`` sets), then the ``VMAMBA_SCAN_BACKEND`` environment variable, then the
automatic choice by device: the highest-priority implementation available for the tensor's
device. The automatic choice never picks the sequential reference, nor on a GPU the PyTorch path.
A backend named by the user that cannot run is an error, never a silent fallback. The choice is
logged once per (operation, device, backend, reason).
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

logger = logging.getLogger('vmamba_kernels')
if not logger.hasHandlers():
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter('[vmamba_kernels] %(message)s'))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

ENV_VAR = 'VMAMBA_SCAN_BACKEND'


def always_available():
    return None


@dataclass(frozen=True)
class Implementation:
    operation: str
    backend: str
    fn: Callable
    devices: Tuple[str, ...]
    # Higher wins in the automatic choice; None means "only when asked for by name".
    priority: Optional[int]
    # Devices where the automatic choice may take it.
    auto_devices: Tuple[str, ...]
    # Returns None when usable, else the reason it is not (shown to the user).
    unavailable_reason: Callable[[], Optional[str]]
    # How it runs, for the log line ('C++ kernel fused with cross-scan/merge', 'tensor ops').
    description: str


_IMPLEMENTATIONS = {}  # operation -> {backend name -> Implementation}
_default_backend = None
_logged = set()


def register(operation, backend, fn, devices, priority=None, auto_devices=None,
             unavailable_reason=always_available, description=''):
    """Make ``fn`` the ``backend`` implementation of ``operation``."""
    auto = tuple(devices) if auto_devices is None else tuple(auto_devices)
    _IMPLEMENTATIONS.setdefault(operation, {})[backend] = Implementation(
        operation, backend, fn, tuple(devices), priority, auto, unavailable_reason, description)


def operations():
    return sorted(_IMPLEMENTATIONS)


def backends_of(operation):
    """Every backend name registered for ``operation``, available or not."""
    _check_operation(operation)
    return list(_IMPLEMENTATIONS[operation])


def available_backends(operation='selective_scan'):
    """Names of the backends of ``operation`` that can run on this machine."""
    _check_operation(operation)
    return [name for name, impl in _IMPLEMENTATIONS[operation].items()
            if impl.unavailable_reason() is None]


def known_backend_names():
    return sorted({name for impls in _IMPLEMENTATIONS.values() for name in impls})


def set_default_backend(name):
    """Force a backend for every call without an explicit ``backend=`` (None: automatic).

    Modules resolve their backend at their first forward on a device and keep it: call this
    before running a model.
    """
    global _default_backend
    if name is not None and name not in known_backend_names():
        raise ValueError(f'Unknown scan backend {name!r} (from set_default_backend); choose one '
                         f'of {known_backend_names()}.')
    _default_backend = name


def _check_operation(operation):
    if operation not in _IMPLEMENTATIONS:
        raise ValueError(f'Unknown scan operation {operation!r}; registered: {operations()}.')


def _named(operation, name, source, device_type):
    impls = _IMPLEMENTATIONS[operation]
    if name not in impls:
        hint = ('' if name in known_backend_names() else
                f' (known backends: {known_backend_names()})')
        raise ValueError(f'Scan backend {name!r} (from {source}) has no {operation} '
                         f'implementation; {operation} has {sorted(impls)}{hint}.')
    impl = impls[name]
    reason = impl.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f'Scan backend {name!r} (from {source}) is not available for '
                           f'{operation}: {reason}')
    if device_type not in impl.devices:
        raise RuntimeError(f'Scan backend {name!r} (from {source}) does not run {operation} on '
                           f'{device_type} tensors; it supports {list(impl.devices)}.')
    return impl, f'requested by {source}'


def resolve(operation, device_type, requested=None):
    """Return ``(Implementation, reason)`` of ``operation`` for tensors on ``device_type``."""
    _check_operation(operation)
    if requested is not None:
        return _named(operation, requested, "the call's backend= argument", device_type)
    if _default_backend is not None:
        return _named(operation, _default_backend, 'set_default_backend / the config',
                      device_type)
    if os.environ.get(ENV_VAR):
        return _named(operation, os.environ[ENV_VAR], f'the {ENV_VAR} environment variable',
                      device_type)
    # Best first, and stop at the first that works: availability checks may build a kernel.
    eligible = sorted((impl for impl in _IMPLEMENTATIONS[operation].values()
                       if impl.priority is not None and device_type in impl.auto_devices),
                      key=lambda impl: -impl.priority)
    skipped = []
    for impl in eligible:
        reason = impl.unavailable_reason()
        if reason is None:
            why = f'automatic choice for {device_type}'
            if skipped:
                why += ' (skipped ' + '; '.join(skipped) + ')'
            return impl, why
        skipped.append(f'{impl.backend}: {reason}')
    raise RuntimeError(
        f'No {operation} kernel for {device_type} tensors. ' +
        ('; '.join(skipped) + '. ' if skipped else '') +
        'Install Triton (pip install triton) or build the CUDA extension (see README, '
        "'Scan backends'); or pass backend='torch' (vectorised PyTorch, slow on a GPU) or "
        "backend='reference' (a loop over tokens) to run a slow path on purpose.")


def log_choice_once(impl, reason, device_type):
    key = (impl.operation, impl.backend, device_type, reason)
    if key not in _logged:
        _logged.add(key)
        how = f' ({impl.description})' if impl.description else ''
        logger.info('%s on %s uses the %r backend%s: %s', impl.operation, device_type,
                    impl.backend, how, reason)


@torch._dynamo.assume_constant_result
def resolve_backend_name(operation, device_type, requested=None):
    """The backend name ``resolve`` picks, logged once; a constant to ``torch.compile``.

    Models call this once per module and device and then dispatch by name, so compiled graphs
    hold no resolution logic (environment reads, availability checks, logging).
    """
    impl, reason = resolve(operation, device_type, requested)
    log_choice_once(impl, reason, device_type)
    return impl.backend


def resolve_once(cache, operation, device_type, requested=None):
    """``resolve_backend_name``, kept in ``cache`` (a module's dict, by device type): a model
    resolves each operation once per device, at its first forward there, and then dispatches by
    name, a dict lookup that a compiled graph holds as a constant."""
    backend = cache.get(device_type)
    if backend is None:
        backend = cache[device_type] = resolve_backend_name(operation, device_type, requested)
    return backend


_INPUT_CHECKS = {}  # operation -> check(*args, **kwargs), raising an error that names the input


def register_input_check(operation, check):
    """``check(*args, **kwargs)`` runs before every call of ``operation`` through ``run`` or a
    bound operation: the operation's written contract, checked on every entrance."""
    _INPUT_CHECKS[operation] = check


def check_inputs(operation, *args, **kwargs):
    check = _INPUT_CHECKS.get(operation)
    if check is not None:
        check(*args, **kwargs)


class BoundOperation:
    """An operation as a module calls it: the backend resolved once per device (at the first
    call there, then a dict lookup a compiled graph holds as a constant), logged once, inputs
    checked on every call. ``requested`` is the model's backend name (None: automatic).

    Holds names only (no kernels), so a module keeping one copies and pickles.
    """

    def __init__(self, operation, requested=None):
        _check_operation(operation)
        self.operation = operation
        self.requested = requested
        self._resolved = {}  # device type -> backend name

    def backend(self, device_type):
        """The backend name this operation runs on ``device_type`` tensors (resolved now if it
        was not yet)."""
        return resolve_once(self._resolved, self.operation, device_type, self.requested)

    def resolved(self):
        """Device type -> backend name, for the devices it ran on so far."""
        return dict(self._resolved)

    def override(self, requested):
        """Choose again from ``requested`` (a backend name or None) at the next call."""
        self.requested = requested
        self._resolved.clear()

    def pin(self, device_type, backend):
        """Run ``backend`` on ``device_type`` from now on, unchecked (the FLOP counter's
        counting kernel); ``override`` or ``unpin`` undoes it."""
        implementation(self.operation, backend)
        self._resolved[device_type] = backend

    def unpin(self, device_type):
        self._resolved.pop(device_type, None)

    def kernel(self, device_type):
        """The resolved implementation's function for ``device_type``, without input checks."""
        return implementation(self.operation, self.backend(device_type)).fn

    def __call__(self, *args, **kwargs):
        check_inputs(self.operation, *args, **kwargs)
        return self.kernel(args[0].device.type)(*args, **kwargs)

    def __repr__(self):
        return (f'BoundOperation({self.operation!r}, requested={self.requested!r}, '
                f'resolved={self._resolved})')


def bind(operation, requested=None):
    """``operation`` bound to a module's backend choice: see ``BoundOperation``."""
    return BoundOperation(operation, requested)


def implementation(operation, backend):
    """The registered implementation, no checks: for callers that resolved ``backend`` already."""
    return _IMPLEMENTATIONS[operation][backend]


def run(operation, device_type, backend, *args, **kwargs):
    """Resolve ``backend`` (None: automatic) for ``operation`` on ``device_type``, log, call."""
    check_inputs(operation, *args, **kwargs)
    impl, reason = resolve(operation, device_type, backend)
    log_choice_once(impl, reason, device_type)
    return impl.fn(*args, **kwargs)
