"""Checkpoint reading for vmamba-mm.

Three jobs:

* :func:`safe_load` reads any torch checkpoint (zip or legacy format) with a restricted
  unpickler.  Tensors, storages, plain containers, numbers and strings come back as usual;
  instances of any other class (for instance the yacs ``CfgNode`` that official VMamba files
  carry under ``config``, or an ``argparse.Namespace``) come back as inert
  :class:`UntrustedObject` records.  Their class is never imported and none of their code runs.
  A pickle that wants to *call* something outside the allow-list (``os.system`` through
  ``__reduce__``, ``builtins.eval``, ...) is refused with :class:`UnsafeCheckpointError`, which
  names the file and the global.
* :func:`load_official_state_dict` and :func:`convert_official_state_dict` turn official VMamba
  classification / detection / segmentation files into state dicts for this project's models.
* :func:`register_checkpoint_loader` installs a local-path (and http) loader into mmengine's
  ``CheckpointLoader`` so that ``load_from``/``resume``/``init_cfg=Pretrained`` work on
  torch >= 2.6 (mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch now defaults
  to ``weights_only=True`` and runner checkpoints with numpy values and ``HistoryBuffer`` objects
  no longer load; mmengine#1655).  It tries, in order: ``weights_only=True``; ``weights_only=True``
  with an allow-list of the classes mmengine and numpy put into runner checkpoints; and
  :func:`safe_load`.  It never falls back to ``weights_only=False``.
"""
from __future__ import annotations

import _compat_pickle
import collections
import os
import os.path as osp
import pickle
import re
import struct
import warnings
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

__all__ = [
    'UnsafeCheckpointError', 'CheckpointContentError', 'CheckpointReadError', 'UntrustedObject',
    'safe_load', 'extract_state_dict',
    'load_official_state_dict', 'convert_official_state_dict', 'trusted_load',
    'register_checkpoint_loader', 'runner_safe_globals'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asked to call something that is not on the allow-list."""


class CheckpointContentError(ValueError):
    """A checkpoint loaded but does not hold what was asked for."""


class CheckpointReadError(CheckpointContentError):
    """A file that is not a readable PyTorch checkpoint: empty, truncated, or not one at all."""


# What torch.load raises for bytes that are not a checkpoint (random, empty, truncated, text):
# the unpicklers index their opcode table and memo with whatever the file holds, and torch's zip
# reader reports a damaged archive as a RuntimeError. UnsafeCheckpointError is handled first.
_UNREADABLE_ERRORS = (pickle.UnpicklingError, EOFError, LookupError, ValueError, TypeError,
                      AttributeError, OverflowError, struct.error, RuntimeError)


def _read_error(source: str, exc: BaseException) -> CheckpointReadError:
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


# --------------------------------------------------------------------------------------------
# Restricted unpickler
# --------------------------------------------------------------------------------------------


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


def _numpy_globals() -> Dict[str, Any]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return {}
    out: Dict[str, Any] = {}
    core = getattr(np, '_core', None) or np.core
    multiarray = core.multiarray
    for mod in ('numpy.core', 'numpy._core'):
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


def _base_allowed_globals() -> Dict[str, Any]:
    allowed: Dict[str, Any] = {}
    try:  # torch's own vetted allow-list for weights_only loading
        from torch import _weights_only_unpickler as wou
        allowed.update(wou._get_allowed_globals())
    except Exception:  # pragma: no cover - private API moved; keep a minimal list
        for name in ('_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3',
                     '_rebuild_parameter', '_rebuild_parameter_with_state'):
            allowed[f'torch._utils.{name}'] = getattr(torch._utils, name)
        allowed['collections.OrderedDict'] = OrderedDict
        allowed['torch.Size'] = torch.Size
        allowed['torch.device'] = torch.device
        allowed['_codecs.encode'] = __import__('_codecs').encode
        for name in dir(torch):
            if isinstance(getattr(torch, name, None), torch.dtype):
                allowed[f'torch.{name}'] = getattr(torch, name)
    # the weights_only unpickler only takes these from user allow-lists
    try:
        for obj in torch.serialization.get_safe_globals():
            if isinstance(obj, tuple):
                allowed[obj[1]] = obj[0]
            else:
                allowed[f'{obj.__module__}.{obj.__qualname__}'] = obj
    except Exception:  # pragma: no cover
        pass
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
    })
    allowed.update(_numpy_globals())
    return allowed


_ALLOWED_CACHE: Optional[Dict[str, Any]] = None


def _allowed_globals() -> Dict[str, Any]:
    global _ALLOWED_CACHE
    if _ALLOWED_CACHE is None:
        _ALLOWED_CACHE = _base_allowed_globals()
    return _ALLOWED_CACHE


def _may_build(inst: Any) -> bool:
    """Whether pickle's BUILD (``__setstate__`` / attribute update) may touch ``inst``.

    Only instances of known data types: never a class, function or module, so a pickle cannot
    change process-wide state (``setattr(torch.Tensor, ...)``)."""
    if type(inst) in (UntrustedObject, torch.Tensor, torch.nn.Parameter, OrderedDict,
                      collections.defaultdict, collections.Counter, collections.deque):
        return True
    try:
        import numpy as np
        return isinstance(inst, (np.ndarray, np.dtype, np.generic)) and not isinstance(inst, type)
    except ImportError:  # pragma: no cover
        return False


def _make_pickle_module(source: str, on_call: str, seen: set):
    """A stand-in for the ``pickle`` module that ``torch.load`` accepts as ``pickle_module``.

    Built on the pure-Python unpickler so that BUILD can be checked as well as globals.
    """
    allowed = _allowed_globals()
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

        def find_class(self, module: str, name: str):  # noqa: D401
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
            import io
            return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()

    return _Module


def _safe_load(path, map_location='cpu', on_call: str = 'error') -> Tuple[Any, set]:
    if on_call not in ('error', 'placeholder'):
        raise ValueError(f"on_call must be 'error' or 'placeholder', got {on_call!r}")
    source = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    if isinstance(path, (str, os.PathLike)) and not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {source}')
    seen: set = set()
    module = _make_pickle_module(source, on_call, seen)
    try:
        obj = torch.load(path, map_location=map_location, pickle_module=module,
                         weights_only=False, mmap=False)
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        # errors raised inside the unpickler may be wrapped; re-raise ours unwrapped
        cause = exc
        while cause is not None:
            if isinstance(cause, UnsafeCheckpointError):
                raise cause from exc
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, _UNREADABLE_ERRORS):
            raise _read_error(source, exc) from exc
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
        CheckpointReadError: the file is not a readable torch checkpoint (empty, truncated, or
            another kind of file), chained from what failed.
        UnsafeCheckpointError: the pickle calls a global that is not allow-listed.
    """
    return _safe_load(path, map_location, on_call)[0]


# --------------------------------------------------------------------------------------------
# Official VMamba checkpoints
# --------------------------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _describe_keys(ckpt: Any) -> str:
    if isinstance(ckpt, Mapping):
        keys = list(ckpt.keys())
        shown = ', '.join(repr(k) for k in keys[:20])
        return f'[{shown}{", ..." if len(keys) > 20 else ""}]'
    return f'(not a dict: {type(ckpt).__name__})'


def extract_state_dict(ckpt: Any, source: str = '<checkpoint>',
                       use_ema: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """Pick the model weights out of an already loaded checkpoint object (see
    :func:`load_official_state_dict`)."""
    if use_ema:
        candidates = ['model_ema', 'state_dict_ema', 'ema_state_dict']
    else:
        candidates = ['model', 'state_dict']
    if isinstance(ckpt, Mapping):
        for key in candidates:
            if key in ckpt:
                sd = ckpt[key]
                if isinstance(sd, Mapping) and _is_state_dict(sd):
                    return OrderedDict(sd)
                if isinstance(sd, Mapping) and 'module' in sd and _is_state_dict(sd['module']):
                    return OrderedDict(sd['module'])  # timm ModelEma-style wrappers
                raise CheckpointContentError(
                    f'{source}: entry {key!r} is not a state dict of tensors '
                    f'(holds {type(sd).__name__})')
        if not use_ema and _is_state_dict(ckpt):
            return OrderedDict(ckpt)
    what = 'EMA weights (' + ', '.join(repr(c) for c in candidates) + ')' if use_ema else \
        "model weights ('model', 'state_dict' or a bare state dict)"
    raise CheckpointContentError(
        f'{source}: no {what} found; top-level keys present: {_describe_keys(ckpt)}')


def load_official_state_dict(path, use_ema: bool = False,
                             map_location='cpu') -> 'OrderedDict[str, torch.Tensor]':
    """Return the model state dict stored in an official VMamba file.

    Reads ``path`` with :func:`safe_load` and returns ``ckpt['model']`` (classification files;
    ``ckpt['model_ema']`` with ``use_ema=True``), ``ckpt['state_dict']`` (detection and
    segmentation files) or the file itself when it is a bare state dict.  Raises
    :class:`CheckpointContentError` naming the file and its top-level keys when the weights are
    missing.  Keys are returned unchanged (see :func:`convert_official_state_dict`).
    """
    return extract_state_dict(safe_load(path, map_location), os.fspath(path), use_ema)


_LEGACY_BLOCK = re.compile(r'^(layers\.\d+\.blocks\.\d+\.)(ln_1|self_attention)\.')
_LAYER_IDX = re.compile(r'^layers\.(\d+)\.')


def _legacy_rename(key: str, top_level: bool) -> str:
    """Apply the official VMamba legacy key renames to a backbone-relative key."""
    if key.startswith('patch_embed.proj.'):
        return 'patch_embed.0.' + key[len('patch_embed.proj.'):]
    if key.startswith('patch_embed.norm.'):
        return 'patch_embed.2.' + key[len('patch_embed.norm.'):]
    m = _LEGACY_BLOCK.match(key)
    if m:
        new = 'norm' if m.group(2) == 'ln_1' else 'op'
        return f'{m.group(1)}{new}.' + key[m.end():]
    if top_level:
        if key.startswith('norm.'):
            return 'classifier.' + key
        if key.startswith('head.'):
            return 'classifier.' + key
    return key


def _guess_task(keys: Iterable[str]) -> str:
    return 'dense' if any(k.startswith('backbone.') for k in keys) else 'classification'


_TASK_ALIASES = {
    'auto': 'auto', 'classification': 'classification', 'cls': 'classification',
    'dense': 'dense', 'det': 'dense', 'detection': 'dense', 'seg': 'dense',
    'segmentation': 'dense'
}


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], task: str = 'auto',
                                num_stages: Optional[int] = None,
                                return_mapping: bool = False):
    """Map official VMamba keys to the keys of this project's models.

    * strips a leading ``module.``;
    * applies the official legacy renames (``patch_embed.proj``->``patch_embed.0``,
      ``patch_embed.norm``->``patch_embed.2``, ``ln_1``->``norm``, ``self_attention``->``op``,
      top-level ``norm``/``head``->``classifier.norm``/``classifier.head``);
    * classification (``task='classification'``, or ``'auto'`` when no key starts with
      ``backbone.``): every key gets ``backbone.``, except ``classifier.norm.*`` ->
      ``backbone.outnorm{last}.*`` (``last`` = highest ``layers.{i}`` index, or
      ``num_stages - 1``) and ``classifier.head.*`` -> ``head.fc.*``;
    * detection/segmentation (``'dense'``/``'det'``/``'seg'``): keys under ``backbone.`` get the
      block/patch-embed legacy renames only; neck/head keys are left as they are.

    Keys it does not know are kept (under ``backbone.`` for classification files) so that the
    model loader reports them.  Tensors are not copied.

    Returns the new ``OrderedDict``; with ``return_mapping=True`` a tuple
    ``(new_state_dict, [(old_key, new_key), ...])``.
    """
    task = _TASK_ALIASES.get(task)
    if task is None:
        raise ValueError(f'unknown task; use one of {sorted(_TASK_ALIASES)}')
    stripped = OrderedDict()
    for k, v in state_dict.items():
        stripped[k[len('module.'):] if k.startswith('module.') else k] = (k, v)
    if task == 'auto':
        task = _guess_task(stripped)

    new_keys: List[Tuple[str, str]] = []
    if task == 'dense':
        for k, (orig, _) in stripped.items():
            if k.startswith('backbone.'):
                new = 'backbone.' + _legacy_rename(k[len('backbone.'):], top_level=False)
            else:
                new = k
            new_keys.append((orig, new))
    else:
        renamed = [(orig, _legacy_rename(k, top_level=True)) for k, (orig, _) in stripped.items()]
        if num_stages is not None:
            last = num_stages - 1
        else:
            idx = [int(m.group(1)) for _, k in renamed for m in [_LAYER_IDX.match(k)] if m]
            last = max(idx) if idx else None
        for orig, k in renamed:
            if k.startswith('classifier.norm.'):
                if last is None:
                    raise CheckpointContentError(
                        'cannot place classifier.norm: no layers.{i} keys to infer the number '
                        'of stages from; pass num_stages')
                new = f'backbone.outnorm{last}.' + k[len('classifier.norm.'):]
            elif k.startswith('classifier.head.'):
                new = 'head.fc.' + k[len('classifier.head.'):]
            elif k.startswith('classifier.'):
                new = k  # unknown classifier part: kept as is, reported by the loader
            else:
                new = 'backbone.' + k
            new_keys.append((orig, new))

    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    origin: Dict[str, str] = {}
    for orig, new in new_keys:
        if new in out:
            raise CheckpointContentError(
                f'keys {origin[new]!r} and {orig!r} both map to {new!r} (a file mixing legacy '
                'and current key names?)')
        out[new] = state_dict[orig]
        origin[new] = orig
    if return_mapping:
        return out, new_keys
    return out


# --------------------------------------------------------------------------------------------
# Loading the project's own (mmengine) checkpoints on torch >= 2.6
# --------------------------------------------------------------------------------------------


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: Any) -> Any:
    """Stands in for ``builtins.getattr`` in runner checkpoints.

    mmengine's ``HistoryBuffer`` keeps its statistics functions (``HistoryBuffer.min`` ...) in a
    dict that ends up in the checkpoint; pickle protocol 2 writes them as
    ``getattr(HistoryBuffer, 'min')``.  Only that lookup is allowed.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str)
            and (name in _HISTORY_BUFFER_METHODS
                 or (name in HistoryBuffer._statistics_methods and not name.startswith('_')))):
        value = getattr(HistoryBuffer, name, None)
        if callable(value) and getattr(value, '__qualname__', '') == f'HistoryBuffer.{name}':
            return value
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint (only HistoryBuffer '
        'statistics methods are)')


def _runner_safe_globals() -> List[Any]:
    """Classes/functions that mmengine and numpy put into runner checkpoints, given to torch's
    weights_only unpickler.  Entries are ``(object, 'module.name')`` pairs so that files
    written under numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) both match."""
    entries: List[Any] = [(obj, name) for name, obj in _numpy_globals().items()]
    entries.append((collections.defaultdict, 'collections.defaultdict'))
    entries.append((collections.deque, 'collections.deque'))
    entries.append((slice, 'builtins.slice'))
    entries.append((range, 'builtins.range'))
    entries.append((frozenset, 'builtins.frozenset'))
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        entries.append((HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'))
        entries.append((_history_buffer_getattr, 'builtins.getattr'))
    except ImportError:  # pragma: no cover
        pass
    try:
        from mmengine.config.config import ConfigDict
        entries.append((ConfigDict, 'mmengine.config.config.ConfigDict'))
    except ImportError:  # pragma: no cover
        pass
    return entries


def runner_safe_globals() -> List[Any]:
    """The allow-list :func:`trusted_load` gives torch's weights_only unpickler for runner
    checkpoints (``(object, 'module.name')`` pairs, usable with
    ``torch.serialization.safe_globals``)."""
    return _runner_safe_globals()


def trusted_load(filename, map_location=None, logger: Any = None) -> Any:
    """Load a checkpoint the way vmamba-mm's mmengine loader does, never with
    ``weights_only=False``:

    1. ``torch.load(weights_only=True)``;
    2. ``torch.load(weights_only=True)`` with the runner allow-list (numpy arrays/scalars/dtypes,
       ``HistoryBuffer``, ``ConfigDict``, a few builtins);
    3. :func:`safe_load` (foreign objects become :class:`UntrustedObject` records, calls of
       non-allow-listed globals are refused), with a warning naming the replaced classes.

    A file that none of them can read raises :class:`CheckpointReadError` from the last one.
    """
    # weights_only fails on unreadable bytes with more than UnpicklingError (a KeyError for a
    # text file); whatever the first two readers cannot read, the last one reads or names.
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except _UNREADABLE_ERRORS:
        pass
    try:
        with torch.serialization.safe_globals(_runner_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except _UNREADABLE_ERRORS:
        pass
    obj, seen = _safe_load(filename, map_location)
    if seen:
        msg = (f'{filename}: objects of classes that are not allow-listed were replaced by '
               f'inert UntrustedObject records: {sorted(seen)}')
        try:
            from mmengine.logging import print_log
            print_log(msg, logger=logger or 'current', level=30)
        except Exception:  # pragma: no cover
            warnings.warn(msg, stacklevel=2)
    return obj


def load_from_local_safe(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for local paths (replaces ``load_from_local``)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return trusted_load(filename, map_location=map_location)


def load_from_http_safe(filename, map_location=None, model_dir=None):
    """mmengine scheme for http(s) URLs: download (into torch hub's cache, rank 0 first) and
    read the file with :func:`trusted_load`."""
    from urllib.parse import urlparse

    from mmengine.dist import get_dist_info
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.exists(cached):
        torch.hub.download_url_to_file(filename, cached, progress=False)
    if world_size > 1:
        torch.distributed.barrier()
    return trusted_load(cached, map_location=map_location)


def register_checkpoint_loader() -> bool:
    """Install :func:`load_from_local_safe` (prefix ``''``, mmengine's local-path default) and
    :func:`load_from_http_safe` (``http://``, ``https://``) into mmengine's ``CheckpointLoader``.

    Idempotent.  Returns ``False`` when mmengine is not installed.  After this,
    ``runner.resume``, ``load_from``, ``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')``
    all go through :func:`trusted_load`.
    """
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:
        return False
    if CheckpointLoader._schemes.get('') is not load_from_local_safe:
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    if CheckpointLoader._schemes.get('http://') is not load_from_http_safe:
        CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                         loader=load_from_http_safe, force=True)
    return True
