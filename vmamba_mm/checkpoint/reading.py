"""Reading torch checkpoints without running code from the file (needs torch only).

:func:`safe_load` reads any torch checkpoint (zip or legacy format) with a restricted unpickler.
Tensors, storages, plain containers, numbers, strings and numpy arrays come back as usual;
instances of any other class (the yacs ``CfgNode`` official VMamba files carry under ``config``,
an ``argparse.Namespace``, mmengine's ``HistoryBuffer`` in runner checkpoints) come back as inert
:class:`UntrustedObject` records: their class is never imported and none of their code runs.
A pickle that wants to *call* something outside the allow-list (``os.system`` through
``__reduce__``, ``builtins.eval``, ...) is refused with :class:`UnsafeCheckpointError`, which
names the file and the global.
"""
from __future__ import annotations

import _compat_pickle
import collections
import importlib
import importlib.util
import io
import os
import os.path as osp
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

__all__ = [
    'UnsafeCheckpointError', 'CheckpointContentError', 'CheckpointReadError',
    'CheckpointDamagedError', 'UntrustedObject', 'safe_load', 'numpy_globals', 'damaged_record',
    'check_records'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asked to call something that is not on the allow-list."""


class CheckpointContentError(ValueError):
    """A checkpoint loaded but does not hold what was asked for."""


class CheckpointReadError(CheckpointContentError):
    """A file that is not a readable PyTorch checkpoint: empty, truncated, or not one at all."""


class CheckpointDamagedError(CheckpointReadError):
    """A zip checkpoint whose structure is whole but one of whose records (a tensor's storage, the
    pickle) no longer has the bytes it was written with."""


def damaged_record(file) -> Optional[str]:
    """The name of the first record of a zip checkpoint whose bytes fail the CRC-32 that the zip
    stores for it, or None (also for a legacy, non-zip file, which has no checksums).

    torch.load reads records without checking their CRC, so damaged storage bytes would load as
    wrong weights (NaNs, noise) without a word. ``file`` is a path or a seekable binary file
    object (left at its start). A damaged zip structure is left to the reader to report.
    """
    is_file_object = not isinstance(file, (str, os.PathLike))
    try:
        if not zipfile.is_zipfile(file):
            return None
        with zipfile.ZipFile(file) as archive:
            # testzip reads every record and returns the first whose CRC-32 does not match
            return archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile):
        return None
    finally:
        if is_file_object:
            file.seek(0)


def check_records(file, source: str) -> None:
    """Raise :class:`CheckpointDamagedError` naming ``source`` and the record whose bytes fail
    their CRC-32 check."""
    record = damaged_record(file)
    if record is not None:
        raise CheckpointDamagedError(
            f'{source} is damaged: its record {record!r} does not match the CRC-32 the zip stores '
            'for it (its bytes changed after it was written: a disk or copy error, or an edit); '
            'use another checkpoint, or save or download this one again.')


# What torch.load raises for bytes that are not a checkpoint (random, empty, truncated, text):
# the unpicklers index their opcode table and memo with whatever the file holds, and torch's zip
# reader reports a damaged archive as a RuntimeError. UnsafeCheckpointError is handled first.
UNREADABLE_ERRORS = (pickle.UnpicklingError, EOFError, LookupError, ValueError, TypeError,
                     AttributeError, OverflowError, struct.error, RuntimeError)


def read_error(source: str, exc: BaseException) -> CheckpointReadError:
    """The CheckpointReadError for ``source``, saying what failed while reading it."""
    lines = str(exc).strip().splitlines()
    if osp.isfile(source) and osp.getsize(source) == 0:
        what = 'the file is empty'
    elif isinstance(exc, EOFError):
        what = 'the data ends early'
    elif lines:
        what = f'reading stopped at {type(exc).__name__}: {lines[0][:200]}'
    else:
        what = f'reading stopped at {type(exc).__name__}'
    return CheckpointReadError(
        f'{source} is not a readable PyTorch checkpoint ({what}); it may be truncated by an '
        'interrupted save or copy, or be another kind of file: use another checkpoint, or save '
        'or download this one again.')


class UntrustedObject(dict):
    """Inert stand-in for an instance of a class that is not allow-listed.

    Nothing of the original class is imported or run.  The record keeps what the pickle held:

    * ``global_name``: ``'module.QualName'`` of the original class;
    * the dict items (for dict subclasses such as yacs ``CfgNode``) as this object's own items,
      so ``ckpt['config']['MODEL']['TYPE']`` works as before;
    * ``state``: what the pickle passed to ``__setstate__`` (e.g. an ``argparse.Namespace``'s
      attribute dict);
    * ``args``/``kwargs``: arguments the pickle passed to ``__new__``;
    * ``listitems``: items appended to it (for list subclasses).
    """

    def __init__(self, global_name: str = '?', args: tuple = (), kwargs: Optional[dict] = None):
        super().__init__()
        self.global_name = global_name
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.state: Any = None
        self.listitems: List[Any] = []

    # pickle's BUILD opcode
    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict) and 'global_name' in state and 'listitems' in state:
            # re-loading a pickled UntrustedObject (allow-listed): restore its own record
            self.__dict__.update(state)
        else:
            self.state = state

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    # pickle's APPEND / APPENDS opcodes for list subclasses
    def append(self, item: Any) -> None:
        self.listitems.append(item)

    def extend(self, items: Iterable[Any]) -> None:
        self.listitems.extend(items)

    def __repr__(self) -> str:
        parts = []
        if len(self):
            parts.append(f'items={dict.__repr__(self)}')
        if self.state is not None:
            parts.append(f'state={self.state!r}')
        if self.args:
            parts.append(f'args={self.args!r}')
        if self.listitems:
            parts.append(f'listitems={self.listitems!r}')
        if self.__dict__.get('called'):
            parts.append('called=True')
        return f'UntrustedObject({self.global_name}' + ''.join(', ' + p for p in parts) + ')'


class _StandInMeta(type):
    """Metaclass of the per-global stand-in classes handed to pickle.

    ``NEWOBJ`` (how protocol-2+ pickles recreate instances) calls ``cls.__new__`` directly and
    gets an :class:`UntrustedObject`.  ``REDUCE``/``INST`` call ``cls(*args)``, i.e. this
    ``__call__``: that would run arbitrary code with the real global, so it is refused (or, with
    ``on_call='placeholder'``, recorded without running anything).
    """

    def __setattr__(cls, name, value):
        raise UnsafeCheckpointError(
            f'checkpoint tried to set attribute {name!r} on the class {cls._global_name!r}')

    def __call__(cls, *args, **kwargs):
        if cls._on_call == 'placeholder':
            obj = UntrustedObject(cls._global_name, args, kwargs)
            obj.called = True
            return obj
        raise UnsafeCheckpointError(
            f'Refusing to load {cls._source!r}: its pickle calls {cls._global_name!r}, which is '
            'not on the allow-list. vmamba-mm never runs code from checkpoint files; if you '
            'trust this file, load it yourself with torch.load(..., weights_only=False).')


def _make_stand_in(global_name: str, source: str, on_call: str, seen: set) -> type:

    def __new__(cls, *args, **kwargs):  # noqa: N807
        return UntrustedObject(global_name, args, kwargs)

    seen.add(global_name)
    return _StandInMeta(f'StandIn[{global_name}]', (), {
        '__new__': __new__,
        '_global_name': global_name,
        '_source': source,
        '_on_call': on_call,
        '__module__': __name__,
    })


def _safe_reconstructor(cls, base, state):
    """Replacement for ``copyreg._reconstructor`` (pickle protocols 0/1)."""
    if isinstance(cls, _StandInMeta):
        obj = cls.__new__(cls)
        if base in (dict, list) and state is not None:
            if base is dict:
                obj.update(state)
            else:
                obj.extend(state)
        return obj
    if cls is UntrustedObject:
        return UntrustedObject(f'{__name__}.UntrustedObject')
    if cls is base and base in (object, dict, list, OrderedDict):
        return base() if state is None else base(state)
    raise UnsafeCheckpointError(
        f'copyreg._reconstructor called with non-allow-listed class {cls!r}')


def _make_inert_getattr(source: str, on_call: str, seen: set):
    """``builtins.getattr`` for pickles, on stand-in classes only.

    Runner checkpoints pickle mmengine's ``HistoryBuffer`` statistics as
    ``getattr(HistoryBuffer, 'min')``. On a stand-in (a class that was never imported) the
    attribute is another stand-in, inert in the same way; on anything real (``numpy.ndarray``
    and its ``tofile``) getattr would hand the pickle a live callable, so it is refused.
    """

    def inert_getattr(obj, name):
        if isinstance(obj, _StandInMeta) and isinstance(name, str):
            return _make_stand_in(f'{obj._global_name}.{name}', source, on_call, seen)
        raise UnsafeCheckpointError(
            f'Refusing to load {source!r}: its pickle calls getattr({obj!r}, {name!r}); '
            'attribute lookups are only allowed on classes the file names but that are never '
            'imported.')

    return inert_getattr


def numpy_globals() -> Dict[str, Any]:
    """The numpy names ``np.save``-free checkpoints use for arrays, scalars and dtypes."""
    if importlib.util.find_spec('numpy') is None:
        return {}
    np = importlib.import_module('numpy')
    core = getattr(np, '_core', None) or np.core
    multiarray = core.multiarray
    out: Dict[str, Any] = {}
    for mod in ('numpy.core', 'numpy._core'):  # files written under numpy 1 and numpy 2
        out[f'{mod}.multiarray._reconstruct'] = multiarray._reconstruct
        out[f'{mod}.multiarray.scalar'] = multiarray.scalar
        out[f'{mod}.numeric._frombuffer'] = core.numeric._frombuffer
    out['numpy.ndarray'] = np.ndarray
    out['numpy.dtype'] = np.dtype
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and name.endswith('DType'):
                out[f'numpy.dtypes.{name}'] = obj
    return out


def _torch_allowed_globals() -> Dict[str, Any]:
    """torch's own vetted allow-list for weights_only loading, and the user-added safe globals."""
    allowed: Dict[str, Any] = {}
    unpickler = importlib.import_module('torch._weights_only_unpickler')
    if hasattr(unpickler, '_get_allowed_globals'):
        allowed.update(unpickler._get_allowed_globals())
    else:  # a torch that moved the private list: what checkpoints of tensors need
        for name in ('_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3',
                     '_rebuild_parameter', '_rebuild_parameter_with_state'):
            if hasattr(torch._utils, name):
                allowed[f'torch._utils.{name}'] = getattr(torch._utils, name)
        allowed['torch.Size'] = torch.Size
        allowed['torch.device'] = torch.device
        allowed['_codecs.encode'] = importlib.import_module('_codecs').encode
        for name in dir(torch):
            if isinstance(getattr(torch, name, None), torch.dtype):
                allowed[f'torch.{name}'] = getattr(torch, name)
    if hasattr(torch.serialization, 'get_safe_globals'):
        for obj in torch.serialization.get_safe_globals():
            if isinstance(obj, tuple):
                allowed[obj[1]] = obj[0]
            else:
                allowed[f'{obj.__module__}.{obj.__qualname__}'] = obj
    return allowed


def _base_allowed_globals() -> Dict[str, Any]:
    allowed = _torch_allowed_globals()
    allowed.update({
        'builtins.object': object,
        'builtins.dict': dict,
        'builtins.list': list,
        'builtins.tuple': tuple,
        'builtins.set': set,
        'builtins.frozenset': frozenset,
        'builtins.complex': complex,
        'builtins.bytearray': bytearray,
        'builtins.slice': slice,
        'builtins.range': range,
        'collections.OrderedDict': OrderedDict,
        'collections.defaultdict': collections.defaultdict,
        'collections.Counter': collections.Counter,
        'collections.deque': collections.deque,
        'copyreg._reconstructor': _safe_reconstructor,
        f'{__name__}.UntrustedObject': UntrustedObject,
        # where UntrustedObject lived before the checkpoint module became a package
        'vmamba_mm.checkpoint.UntrustedObject': UntrustedObject,
    })
    allowed.update(numpy_globals())
    return allowed


_ALLOWED_CACHE: Optional[Dict[str, Any]] = None


def _allowed_globals() -> Dict[str, Any]:
    global _ALLOWED_CACHE
    if _ALLOWED_CACHE is None:
        _ALLOWED_CACHE = _base_allowed_globals()
    return _ALLOWED_CACHE


def _numpy_data_types() -> tuple:
    if importlib.util.find_spec('numpy') is None:
        return ()
    np = importlib.import_module('numpy')
    return (np.ndarray, np.dtype, np.generic)


def _may_build(inst: Any) -> bool:
    """Whether pickle's BUILD (``__setstate__`` / attribute update) may touch ``inst``.

    Only instances of known data types: never a class, function or module, so a pickle cannot
    change process-wide state (``setattr(torch.Tensor, ...)``)."""
    if type(inst) in (UntrustedObject, torch.Tensor, torch.nn.Parameter, OrderedDict,
                      collections.defaultdict, collections.Counter, collections.deque):
        return True
    return isinstance(inst, _numpy_data_types()) and not isinstance(inst, type)


def _make_pickle_module(source: str, on_call: str, seen: set):
    """A stand-in for the ``pickle`` module that ``torch.load`` accepts as ``pickle_module``.

    Built on the pure-Python unpickler so that BUILD can be checked as well as globals.
    """
    allowed = dict(_allowed_globals())
    allowed['builtins.getattr'] = _make_inert_getattr(source, on_call, seen)
    stand_ins: Dict[str, type] = {}

    def load_build(self):
        inst = self.stack[-2]  # stack: ..., inst, state
        if not _may_build(inst):
            raise UnsafeCheckpointError(
                f'Refusing to load {source!r}: its pickle sets the state of {inst!r} '
                f'(type {type(inst).__module__}.{type(inst).__qualname__}), which is not allowed')
        return pickle._Unpickler.load_build(self)

    class RestrictedUnpickler(pickle._Unpickler):
        dispatch = dict(pickle._Unpickler.dispatch)
        dispatch[pickle.BUILD[0]] = load_build

        def find_class(self, module: str, name: str):
            # Python 2 era names (what the stock find_class does with fix_imports)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            key = f'{module}.{name}'
            if key in allowed:
                return allowed[key]
            if key not in stand_ins:
                stand_ins[key] = _make_stand_in(key, source, on_call, seen)
            return stand_ins[key]

    class _Module:
        __name__ = 'vmamba_mm_restricted_pickle'
        Unpickler = RestrictedUnpickler
        UnpicklingError = pickle.UnpicklingError

        @staticmethod
        def load(file, **kwargs):
            return RestrictedUnpickler(file, **kwargs).load()

        @staticmethod
        def loads(data, **kwargs):
            return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()

    return _Module


def safe_load_with_replaced(path, map_location='cpu', on_call: str = 'error',
                            records_checked: bool = False) -> Tuple[Any, set]:
    """:func:`safe_load`, and the set of global names that were replaced by stand-ins.

    records_checked: the caller has run :func:`check_records` on ``path`` already."""
    if on_call not in ('error', 'placeholder'):
        raise ValueError(f"on_call must be 'error' or 'placeholder', got {on_call!r}")
    source = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    if isinstance(path, (str, os.PathLike)) and not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {source}')
    if not records_checked:
        check_records(path, source)
    seen: set = set()
    module = _make_pickle_module(source, on_call, seen)
    try:
        obj = torch.load(path, map_location=map_location, pickle_module=module,
                         weights_only=False, mmap=False)
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        # torch may wrap what the unpickler raised; a refusal stays a refusal
        cause = exc
        while cause is not None:
            if isinstance(cause, UnsafeCheckpointError):
                raise cause from exc
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, UNREADABLE_ERRORS):
            raise read_error(source, exc) from exc
        raise
    return obj, seen


def safe_load(path, map_location='cpu', on_call: str = 'error') -> Any:
    """Load a torch checkpoint with a restricted unpickler that never runs code from the file.

    Args:
        path: checkpoint file (zip or legacy torch format) or a readable binary file object.
        map_location: as in :func:`torch.load`.
        on_call: what to do when the pickle calls a global that is not allow-listed:
            ``'error'`` (default) raises :class:`UnsafeCheckpointError` naming the file and the
            global; ``'placeholder'`` records the call as an :class:`UntrustedObject` with
            ``called=True`` instead.  Either way the callable is never imported or run.

    Returns:
        The unpickled object.  Tensors and storages, dict/list/tuple/set/OrderedDict, numbers,
        strings, torch dtypes/devices/sizes and numpy arrays/scalars are real; instances of any
        other class are :class:`UntrustedObject` records.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        CheckpointReadError: the file is not a readable torch checkpoint (empty, truncated, or
            another kind of file), chained from what failed.
        CheckpointDamagedError: a record of the zip file fails its CRC-32 check (named).
        UnsafeCheckpointError: the pickle calls a global that is not allow-listed.
    """
    return safe_load_with_replaced(path, map_location, on_call)[0]
