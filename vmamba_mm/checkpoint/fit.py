"""Whether a checkpoint's weights fit a model: the same keys, with the same shapes.

mmengine loads checkpoints with strict=False and only logs what did not fit, so a checkpoint of
another model would be tested (or returned by ``mmpretrain.get_model``) with random weights, and
an official VMamba file would load next to nothing. Here every load into a model that holds a
VSSM goes one way (:func:`fitting_weights`): the weights are taken out of the checkpoint, an
official file's keys are converted, and anything that does not fit raises
``CheckpointMismatchError`` with a one-line summary. :func:`install_strict_loading` puts that
in front of mmengine's ``load_state_dict``, which ``load_checkpoint``, the Runner (``load_from``,
``resume``) and the mmpretrain/mmdet/mmseg inferencers all end in. Needs mmengine, so, like
``mmengine_loader``, it is not imported by the package: ``from vmamba_mm.checkpoint.fit import
...``.
"""
from collections import OrderedDict
from collections.abc import Mapping

import mmengine.runner.checkpoint as mmengine_checkpoint
from mmengine.model import BaseTTAModel, is_model_wrapper

from .conversion import convert_official_state_dict, extract_state_dict, looks_official
from .mismatch import describe_mismatch
from .mmengine_loader import source_of, trusted_load
from .reading import CheckpointContentError


class CheckpointMismatchError(ValueError):
    """A checkpoint whose weights do not fit the model, summarised in one line."""


def bare_model(model):
    """The model inside DDP and test-time-augmentation wrappers, whose keys checkpoints hold."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _is_bare_state_dict(obj):
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(key, str) and hasattr(value, 'shape') for key, value in obj.items()))


def _weights(checkpoint, source):
    """The model weights of a loaded checkpoint: its ``state_dict``, an official file's
    ``model``, or the checkpoint itself when it is a state dict; ``module.`` prefixes removed."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
        weights = checkpoint['state_dict']
    elif _is_bare_state_dict(checkpoint):
        weights = checkpoint
    else:
        try:
            weights = extract_state_dict(checkpoint, source)
        except CheckpointContentError:
            top = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else []
            raise CheckpointMismatchError(
                f'{source} holds no model weights (no state_dict or model entry, and not a state '
                f'dict itself; top-level keys: {top[:8] or type(checkpoint).__name__}).') from None
    # mmengine strips the prefix that DDP-wrapped models were saved with.
    return {key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in weights.items()}


def _backbone_fits(weights, expected):
    ours = {key: value for key, value in expected.items() if key.startswith('backbone.')}
    theirs = {key: value for key, value in weights.items() if key.startswith('backbone.')}
    return bool(ours) and not describe_mismatch(theirs, ours)


def fitting_weights(checkpoint, model, source, resuming=False, unused_prefixes=()):
    """The weights of ``checkpoint`` that load into ``model`` strictly, or
    CheckpointMismatchError naming ``source`` and the keys that do not fit.

    checkpoint: a loaded runner checkpoint (its ``state_dict``), an official VMamba file (its
    ``model``, keys converted to this project's) or a bare state dict (official keys converted).
    unused_prefixes: keys the model is known not to use; allowed in the checkpoint and left out
    of what is returned.
    """
    weights = _weights(checkpoint, source)
    expected = bare_model(model).state_dict()
    mismatch = describe_mismatch(weights, expected, unused_prefixes)
    converted = ''
    if mismatch and looks_official(weights):
        weights = dict(convert_official_state_dict(weights))
        mismatch = describe_mismatch(weights, expected, unused_prefixes)
        converted = ' (an official VMamba file, its keys converted)'
    if mismatch:
        lead = (f'cannot resume from {source}{converted}: it is a checkpoint of another model'
                if resuming else f'{source}{converted} does not fit the model of this config')
        hint = ''
        if not resuming and _backbone_fits(weights, expected):
            hint = (f' Its backbone fits: to start from the backbone alone (another head, '
                    f'fine-tuning), set model.backbone.init_cfg=dict(type=\'Pretrained\', '
                    f'checkpoint=\'{source}\', prefix=\'backbone.\') instead.')
        raise CheckpointMismatchError(f'{lead}: {mismatch}.{hint}')
    if resuming and not (isinstance(checkpoint, Mapping) and 'meta' in checkpoint):
        raise CheckpointMismatchError(
            f'cannot resume from {source}: it holds weights only, no training state (epoch, '
            f'optimizer); start a new run from its weights with --cfg-options '
            f'load_from={source} instead of --resume.')
    return {key: value for key, value in weights.items()
            if not key.startswith(tuple(unused_prefixes))}


def check_checkpoint_fits(checkpoint, model, source, resuming=False, unused_prefixes=()):
    """Raise CheckpointMismatchError unless checkpoint's weights (official keys converted) are
    exactly model's; see :func:`fitting_weights`."""
    fitting_weights(checkpoint, model, source, resuming, unused_prefixes)


def load_fitting_checkpoint(model, path):
    """Load ``path`` into ``model`` strictly, as the analysis and deployment tools do: the
    project's checkpoints, or official VMamba files converted on load. Raises
    CheckpointContentError for a file that is not a checkpoint and CheckpointMismatchError,
    naming the keys, for one that does not fit; nothing is loaded then."""
    weights = fitting_weights(trusted_load(path, map_location='cpu'), model, path)
    bare_model(model).load_state_dict(weights, strict=True)


def holds_vssm(module):
    from ..models import VSSM
    return any(isinstance(child, VSSM) for child in bare_model(module).modules())


_mmengine_load_state_dict = mmengine_checkpoint.load_state_dict


def load_state_dict_strictly(module, state_dict, strict=False, logger=None):
    """mmengine's ``load_state_dict``, strict and converting for models that hold a VSSM.

    For those, :func:`fitting_weights` decides what loads (``strict=False`` is not honoured:
    a half-loaded VMamba is never what was meant); any other module loads as mmengine loads it.
    """
    if not holds_vssm(module):
        return _mmengine_load_state_dict(module, state_dict, strict, logger)
    weights = OrderedDict(fitting_weights(state_dict, module, source_of(state_dict)))
    return _mmengine_load_state_dict(module, weights, True, logger)


def install_strict_loading():
    """Put :func:`load_state_dict_strictly` in place of mmengine's ``load_state_dict`` (looked up
    at call time by ``load_checkpoint`` and ``_load_checkpoint_to_model``, which
    ``mmpretrain.get_model``, the inferencers, ``init_detector``/``init_model`` and the Runner
    use). Idempotent; returns True."""
    mmengine_checkpoint.load_state_dict = load_state_dict_strictly
    return True
