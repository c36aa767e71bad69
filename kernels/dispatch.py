"""One dispatch for every kernel operation, keyed by (operation, backend).

An operation (``selective_scan``, ``cross_scan``, ``cross_merge``, ``cross_selective_scan``, and
whatever later folders add) registers one implementation per backend name and its input check
(``register_input_check``: the operation's written contract). Backend names are shared across
operations, so one choice ('cpp', 'triton', ...) selects a consistent set of kernels for a whole
block.

Two entrances, one path: a public function calls ``run``; a module holds a ``BoundOperation``
(``bind``), which resolves its backend once per device. Both check the inputs on every call.

Precedence when choosing: the ``backend=`` argument of a call (or a module's backend), then
``set_default_backend``, then the ``VMAMBA_SCAN_BACKEND`` environment variable, then the
automatic choice by device: the highest-priority implementation available for the tensor's
device. The automatic choice never picks the sequential reference, nor on a GPU the PyTorch path.

A backend name that some operation has but this one lacks runs this operation's ``torch``
backend, and the log says so ("add_layer_norm has no 'cpp' backend; its 'torch' backend runs"):
one name still selects a whole block's kernels where they exist. A name no operation has is an
error naming the valid ones; a backend named by the user that exists but cannot run is an error,
never a silent fallback. The choice is logged once per (operation, device, backend, reason) on
the ``vmamba_kernels`` logger (see ``_StderrUnlessHandled``).
"""
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple



class _StderrUnlessHandled(logging.StreamHandler):
    """Prints the kernels' records to stderr only when no other handler would receive them.

    The logger propagates: a run's log (mmengine's logger, through the bridge that
    ``vmamba_mm.registry`` attaches) or an application's configured root logging gets the backend
    choice, and this handler stays silent. A torch-only user without any logging set up still
    sees the choice on stderr (Python's last-resort handler would drop INFO records).
    """

    def emit(self, record):
        if not _another_handler_receives(logging.getLogger('vmamba_kernels'), self):
            super().emit(record)


def _another_handler_receives(start, this):
    current = start
    while current is not None:
        if any(handler is not this for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


logger = logging.getLogger('vmamba_kernels')
if not any(isinstance(h, _StderrUnlessHandled) for h in logger.handlers):
    _handler = _StderrUnlessHandled()
    _handler.setFormatter(logging.Formatter('[vmamba_kernels] %(message)s'))
    logger.addHandler(_handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)

ENV_VAR = 'VMAMBA_SCAN_BACKEND'
# What runs when an operation lacks the backend a name asks for (see the module docstring).
FALLBACK_BACKEND = 'torch'


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


@dataclass(frozen=True)
class BackendDescription:
    """What ``describe`` tells about one backend of one operation (availability checked now)."""
    operation: str
    backend: str
    devices: Tuple[str, ...]
    auto_devices: Tuple[str, ...]
    priority: Optional[int]
    description: str
    # None when it can run here, else why not.
    unavailable_reason: Optional[str]


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


def describe(operation, backend):
    """The registered ``backend`` of ``operation``: its devices, priority, description and why it
    cannot run here (None when it can). Checking availability may build its kernel."""
    _check_operation(operation)
    impls = _IMPLEMENTATIONS[operation]
    if backend not in impls:
        raise ValueError(f'{operation} has no {backend!r} backend; it has {sorted(impls)}.')
    impl = impls[backend]
    return BackendDescription(operation, backend, impl.devices, impl.auto_devices, impl.priority,
                              impl.description, impl.unavailable_reason())


def set_default_backend(name):
    """Set the process-wide backend for every call and module that did not name one (None:
    back to the ``VMAMBA_SCAN_BACKEND`` variable, then the automatic choice).

    An explicit ``backend=`` of a call, or a model's ``scan_backend``, still wins. Modules resolve
    their backend at their first forward on a device and keep it: call this before running a
    model.
    """
    global _default_backend
    if name is not None and name not in known_backend_names():
        raise ValueError(f'Unknown scan backend {name!r} (from set_default_backend); choose one '
                         f'of {known_backend_names()}.')
    _default_backend = name


def _check_operation(operation):
    if operation not in _IMPLEMENTATIONS:
        raise ValueError(f'Unknown scan operation {operation!r}; registered: {operations()}.')


def _backend_that_runs(operation, name, source):
    """(the backend of ``operation`` that a request for ``name`` runs, why, when not ``name``):
    ``name`` itself, or ``FALLBACK_BACKEND`` when ``operation`` lacks a name that another
    operation has. A name no operation has is an error."""
    impls = _IMPLEMENTATIONS[operation]
    if name in impls:
        return name, None
    if name not in known_backend_names():
        raise ValueError(f'Scan backend {name!r} (from {source}) is no backend of any operation, '
                         f'so it has no {operation} implementation; {operation} has '
                         f'{sorted(impls)} (known backends: {known_backend_names()}).')
    if FALLBACK_BACKEND not in impls:
        raise ValueError(f'Scan backend {name!r} (from {source}) has no {operation} '
                         f'implementation, and {operation} has no {FALLBACK_BACKEND!r} backend '
                         f'to run instead; {operation} has {sorted(impls)}.')
    return FALLBACK_BACKEND, (f'{operation} has no {name!r} backend; its {FALLBACK_BACKEND!r} '
                              f'backend runs')


def _named(operation, name, source, device_type):
    backend, substituted = _backend_that_runs(operation, name, source)
    impl = _IMPLEMENTATIONS[operation][backend]
    reason = impl.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f'Scan backend {backend!r} (from {source}) is not available for '
                           f'{operation}: {reason}')
    if device_type not in impl.devices:
        raise RuntimeError(f'Scan backend {backend!r} (from {source}) does not run {operation} on '
                           f'{device_type} tensors; it supports {list(impl.devices)}.')
    if substituted is not None:
        return impl, f'{substituted} ({name!r} requested by {source})'
    return impl, f'requested by {source}'


def resolve(operation, device_type, requested=None):
    """Return ``(Implementation, reason)`` of ``operation`` for tensors on ``device_type``."""
    _check_operation(operation)
    if requested is not None:
        return _named(operation, requested, "the call's backend= argument", device_type)
    if _default_backend is not None:
        return _named(operation, _default_backend, 'set_default_backend', device_type)
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


def _assume_constant_result(fn):
    """``torch._dynamo.assume_constant_result`` without importing dynamo.

    Importing ``torch._dynamo`` costs more than importing torch itself (seconds), and every tool
    and model import would pay it for a decorator that only sets a marker; the test
    ``test_constant_result_marker_matches_dynamo`` keeps the marker equal to dynamo's own."""
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result
def resolve_backend_name(operation, device_type, requested=None):
    """The backend name ``resolve`` picks, logged once; a constant to ``torch.compile``."""
    impl, reason = resolve(operation, device_type, requested)
    log_choice_once(impl, reason, device_type)
    return impl.backend


def resolve_once(cache, operation, device_type, requested=None):
    """Internal to the dispatch (``BoundOperation`` keeps its choice with it): the backend name
    of ``resolve_backend_name``, kept in ``cache`` by device type."""
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
        counting kernel); ``override`` or ``unpin`` undoes it. A name this operation lacks runs
        its ``torch`` backend, logged as every substitution is."""
        name, substituted = _backend_that_runs(self.operation, backend, 'a pinned backend')
        if substituted is not None:
            log_choice_once(_IMPLEMENTATIONS[self.operation][name],
                            f'{substituted} ({backend!r} pinned)', device_type)
        self._resolved[device_type] = name

    def unpin(self, device_type):
        self._resolved.pop(device_type, None)

    @contextlib.contextmanager
    def pinned(self, device_type, backend):
        """Within the block, ``pin(device_type, backend)``; the earlier choice comes back
        after."""
        before = self._resolved.get(device_type)
        self.pin(device_type, backend)
        try:
            yield
        finally:
            if before is None:
                self.unpin(device_type)
            else:
                self._resolved[device_type] = before

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
    """Internal to the kernels: the implementation a request for ``backend`` runs (the name rule
    applied: see ``_backend_that_runs``), without availability or input checks; for callers that
    resolved ``backend`` already and for the composite backends, which run three operations."""
    _check_operation(operation)
    name, _ = _backend_that_runs(operation, backend, 'a composite backend')
    return _IMPLEMENTATIONS[operation][name]


def run(operation, device_type, backend, *args, **kwargs):
    """Resolve ``backend`` (None: automatic) for ``operation`` on ``device_type``, log, call."""
    check_inputs(operation, *args, **kwargs)
    impl, reason = resolve(operation, device_type, backend)
    log_choice_once(impl, reason, device_type)
    return impl.fn(*args, **kwargs)
