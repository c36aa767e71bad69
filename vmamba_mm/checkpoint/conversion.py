"""Official VMamba checkpoints -> the state dicts of this project's models (needs torch only).

* :func:`extract_state_dict` picks the weights out of a loaded checkpoint (``model``,
  ``model_ema``, ``state_dict`` or a bare state dict);
* :func:`load_official_state_dict` reads a file with the restricted unpickler and does that;
* :func:`convert_official_state_dict` renames official keys to ours.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from .reading import CheckpointContentError, safe_load

__all__ = [
    'extract_state_dict', 'load_official_state_dict', 'convert_official_state_dict',
    'looks_official'
]


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


def looks_official(state_dict: Mapping[str, Any]) -> bool:
    """Whether keys are in the official layout (a classifier's, or legacy block names) rather
    than ours (everything under ``backbone.``/``head.``)."""
    return any(k.startswith(('classifier.', 'layers.', 'patch_embed.')) for k in state_dict) or \
        any('.ln_1.' in k or '.self_attention.' in k for k in state_dict)


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
    if top_level and key.startswith(('norm.', 'head.')):
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
