"""Pretrained weights into VSSM models: loudly, never into a silent random init (torch only).

Accepts the project's own checkpoints (``state_dict`` with ``backbone.*``, runner checkpoints
included), converted official files, and official files as released (``model``/``state_dict``,
converted on the fly). Files are read with the restricted unpickler: no code in them runs.
"""
import importlib.util
import logging
import os
import os.path as osp
from urllib.parse import urlparse

import torch

from ..checkpoint import convert_official_state_dict, extract_state_dict, looks_official, safe_load
from ..checkpoint.mismatch import describe_mismatch

logger = logging.getLogger(__name__)


class PretrainedMismatchError(KeyError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists them."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


def _download(url):
    """An http(s) checkpoint, downloaded once into torch hub's cache; the local path."""
    folder = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    cached = osp.join(folder, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, progress=False)
    return cached


def _read_url(url, map_location):
    if importlib.util.find_spec('mmengine') is not None:
        # mmengine knows more schemes (open-mmlab://, s3://, ...) and downloads on rank 0 first;
        # with vmamba_mm registered its http reader is the safe one.
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(url, map_location=map_location)
    if urlparse(url).scheme in ('http', 'https'):
        return safe_load(_download(url), map_location)
    raise ValueError(f'Cannot read checkpoint {url!r}: without mmengine only local paths and '
                     f'http(s) URLs are supported. Download the file and pass its path.')


def read_state_dict(checkpoint, map_location='cpu'):
    """The weights in ``checkpoint`` (a path or URL), official keys converted to ours."""
    path = os.fspath(checkpoint)
    if '://' in path:
        raw = _read_url(path, map_location)
    else:
        path = osp.expanduser(path)
        if not osp.isfile(path):
            raise FileNotFoundError(f'Pretrained checkpoint not found: {path!r}. Fix the path, '
                                    f'or build the model without pretrained weights on purpose.')
        raw = safe_load(path, map_location)
    state_dict = extract_state_dict(raw, source=path)
    if looks_official(state_dict):
        state_dict = convert_official_state_dict(state_dict)
    return state_dict


def _split_prefix(state_dict, prefix):
    """Keys under ``prefix`` with it removed, and the keys that are not under it."""
    if prefix is None:
        prefix = 'backbone.' if any(k.startswith('backbone.') for k in state_dict) else ''
    if not prefix:
        return dict(state_dict), []
    ours = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    others = [k for k in state_dict if not k.startswith(prefix)]
    return ours, others


def load_checked(model, weights, source, what, may_be_missing=(), hint=''):
    """Load ``weights`` into ``model``; raise naming the mismatch.

    Keys starting with one of ``may_be_missing`` may be absent from ``weights`` (they keep their
    initialisation); returns those that were. Any other missing key, any unexpected key, or a
    shape mismatch raises :class:`PretrainedMismatchError` naming ``source``, how many keys of
    each kind and the first few (``checkpoint.mismatch``, the words of every loader).
    """
    own = model.state_dict()
    mismatch = describe_mismatch(weights, own, may_be_missing=may_be_missing)
    if mismatch:
        raise PretrainedMismatchError(
            f'Checkpoint {source!r} does not fit this {what}: {mismatch}. {hint}'.rstrip())
    model.load_state_dict(weights, strict=False)
    return sorted(k for k in own if k not in weights)


def _fresh_norms_note(fresh):
    if not fresh:
        return ''
    return (f' Not in the checkpoint, initialised as identity (expected for per-stage output '
            f'norms a classification checkpoint lacks): {fresh}.')


def load_pretrained_backbone(backbone, checkpoint, prefix=None, map_location='cpu'):
    """Load ``checkpoint`` into a VSSM ``backbone``; raise listing every mismatch.

    Only the keys under ``prefix`` (default: ``backbone.`` when the file has such keys) are the
    backbone's; the others (a classifier head, a detector's neck) are ignored and the log says
    how many. The per-stage output norms (``outnorm{i}``) may be absent from the file (a
    classification checkpoint has only the last stage's): they keep their identity
    initialisation and the log says so. Any other missing key, any unexpected backbone key, or a
    shape mismatch raises. Returns the weights loaded.
    """
    path = os.fspath(checkpoint)
    if '://' not in path and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(
            f'VSSM pretrained checkpoint not found: {path!r} (from init_cfg.checkpoint). Fix the '
            f'path, or remove init_cfg to train from scratch on purpose.')
    weights, ignored = _split_prefix(read_state_dict(checkpoint, map_location), prefix)
    arch = getattr(backbone, 'arch_name', None) or 'the configured arch'
    fresh = load_checked(
        backbone, weights, checkpoint, f'VSSM ({arch})', may_be_missing=('outnorm', ),
        hint=(f'Check that the arch is the one the checkpoint was trained with, and the '
              f'prefix of its backbone keys (now {prefix!r}).'))
    message = f'Loaded VSSM backbone weights from {checkpoint}: {len(weights)} tensors.'
    message += _fresh_norms_note(fresh)
    if ignored:
        message += f' Ignored {len(ignored)} non-backbone keys (e.g. {ignored[:3]}).'
    logger.info(message)
    return weights
