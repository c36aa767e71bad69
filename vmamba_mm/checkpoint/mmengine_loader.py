"""Loading the project's own (mmengine) checkpoints on torch >= 2.6; needs mmengine.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch now defaults to
``weights_only=True`` and runner checkpoints with numpy values and ``HistoryBuffer`` objects no
longer load (mmengine#1655). :func:`register_checkpoint_loader` installs a local-path and http
loader into mmengine's ``CheckpointLoader`` so that ``load_from``/``resume``/
``init_cfg=Pretrained`` work again. It reads with :func:`trusted_load`, which never falls back to
``weights_only=False``.

Imported only by ``vmamba_mm.registry`` (when mmengine is installed) and by the tools.
"""
from __future__ import annotations

import collections
import os
import os.path as osp
import pickle
import weakref
from collections.abc import Mapping
from typing import Any, List
from urllib.parse import urlparse

import torch
from mmengine.config.config import ConfigDict
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .reading import UNREADABLE_ERRORS, check_records, numpy_globals, safe_load_with_replaced

__all__ = [
    'trusted_load', 'runner_safe_globals', 'register_checkpoint_loader', 'load_from_local_safe',
    'load_from_http_safe', 'remember_source', 'source_of'
]

_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: Any) -> Any:
    """Stands in for ``builtins.getattr`` in runner checkpoints.

    mmengine's ``HistoryBuffer`` keeps its statistics functions (``HistoryBuffer.min`` ...) in a
    dict that ends up in the checkpoint; pickle protocol 2 writes them as
    ``getattr(HistoryBuffer, 'min')``.  Only that lookup is allowed.
    """
    if (obj is HistoryBuffer and isinstance(name, str)
            and (name in _HISTORY_BUFFER_METHODS
                 or (name in HistoryBuffer._statistics_methods and not name.startswith('_')))):
        value = getattr(HistoryBuffer, name, None)
        if callable(value) and getattr(value, '__qualname__', '') == f'HistoryBuffer.{name}':
            return value
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint (only HistoryBuffer '
        'statistics methods are)')


def runner_safe_globals() -> List[Any]:
    """Classes/functions that mmengine and numpy put into runner checkpoints, for torch's
    weights_only unpickler (``(object, 'module.name')`` pairs, usable with
    ``torch.serialization.safe_globals``), so that files written under numpy 1 (``numpy.core``)
    and numpy 2 (``numpy._core``) both match."""
    entries: List[Any] = [(obj, name) for name, obj in numpy_globals().items()]
    entries += [
        (collections.defaultdict, 'collections.defaultdict'),
        (collections.deque, 'collections.deque'),
        (slice, 'builtins.slice'),
        (range, 'builtins.range'),
        (frozenset, 'builtins.frozenset'),
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_history_buffer_getattr, 'builtins.getattr'),
        (ConfigDict, 'mmengine.config.config.ConfigDict'),
    ]
    return entries


def trusted_load(filename, map_location=None, logger: Any = None) -> Any:
    """Load a checkpoint the way vmamba-mm's mmengine loader does, never with
    ``weights_only=False``:

    1. ``torch.load(weights_only=True)``;
    2. ``torch.load(weights_only=True)`` with the runner allow-list (numpy arrays/scalars/dtypes,
       ``HistoryBuffer``, ``ConfigDict``, a few builtins);
    3. :func:`~vmamba_mm.checkpoint.safe_load` (foreign objects become ``UntrustedObject``
       records, calls of non-allow-listed globals are refused), with a warning naming the
       replaced classes.

    A file that none of them can read raises ``CheckpointReadError`` from the last one. Before
    any of them, each record of a zip file is checked against its CRC-32: a damaged one raises
    ``CheckpointDamagedError`` naming the file and the record.
    """
    check_records(filename, str(filename))
    # weights_only fails on unreadable bytes with more than UnpicklingError (a KeyError for a
    # text file); whatever the first two readers cannot read, the last one reads or names.
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except UNREADABLE_ERRORS:
        pass
    try:
        with torch.serialization.safe_globals(runner_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except UNREADABLE_ERRORS:
        pass
    obj, replaced = safe_load_with_replaced(filename, map_location, records_checked=True)
    if replaced:
        print_log(f'{filename}: objects of classes that are not allow-listed were replaced by '
                  f'inert UntrustedObject records: {sorted(replaced)}',
                  logger=logger or 'current', level=30)
    return obj


# The file each checkpoint that vmamba-mm's readers hand to mmengine came from, so that a
# mismatch found in load_state_dict (which gets the weights only) can name it: one of its
# tensors, weakly referenced, and the path. Only the latest read is kept; weights that are not
# its (compared by identity) are named "the checkpoint".
_latest_read = {'tensor': None, 'source': None}


def remember_source(checkpoint, source):
    """Note that ``checkpoint`` (just read) came from ``source``; returns ``checkpoint``."""
    tensor = next(_tensors(checkpoint), None)
    _latest_read['tensor'] = weakref.ref(tensor) if tensor is not None else None
    _latest_read['source'] = source
    return checkpoint


def _tensors(obj, depth=0):
    """Tensors of a checkpoint, its state dicts and the state dicts in those."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping) and depth < 2:
        for value in obj.values():
            yield from _tensors(value, depth + 1)


def source_of(weights):
    """The file ``weights`` (a checkpoint or state dict) were read from, if known."""
    ref = _latest_read['tensor']
    tensor = ref() if ref is not None else None
    if tensor is not None and any(value is tensor for value in _tensors(weights)):
        return _latest_read['source']
    return 'the checkpoint'



def load_from_local_safe(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for local paths (replaces ``load_from_local``)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return remember_source(trusted_load(filename, map_location=map_location), filename)


def load_from_http_safe(filename, map_location=None, model_dir=None):
    """mmengine scheme for http(s) URLs: download (into torch hub's cache, rank 0 first) and
    read the file with :func:`trusted_load`."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.exists(cached):
        torch.hub.download_url_to_file(filename, cached, progress=False)
    if world_size > 1:
        torch.distributed.barrier()
    return remember_source(trusted_load(cached, map_location=map_location), filename)


def register_checkpoint_loader() -> bool:
    """Install :func:`load_from_local_safe` (prefix ``''``, mmengine's local-path default) and
    :func:`load_from_http_safe` (``http://``, ``https://``) into mmengine's ``CheckpointLoader``.

    Idempotent; returns True.  After this, ``runner.resume``, ``load_from``,
    ``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')`` all go through
    :func:`trusted_load`.
    """
    if CheckpointLoader._schemes.get('') is not load_from_local_safe:
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    if CheckpointLoader._schemes.get('http://') is not load_from_http_safe:
        CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                         loader=load_from_http_safe, force=True)
    return True
