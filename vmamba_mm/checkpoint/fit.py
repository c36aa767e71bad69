"""Whether a checkpoint's weights fit a model: the same keys, with the same shapes.

mmengine loads checkpoints with strict=False and only logs what did not fit, so a checkpoint of
another model (or an official VMamba file that was not converted) would be tested as random
weights. ``check_checkpoint_fits`` raises ``CheckpointMismatchError`` with a one-line summary
instead. Needs mmengine, so, like ``mmengine_loader``, it is not imported by the package:
``from vmamba_mm.checkpoint.fit import ...``.
"""
import re
from collections.abc import Mapping

from mmengine.model import BaseTTAModel, is_model_wrapper

from .conversion import convert_official_state_dict, extract_state_dict, looks_official
from .mmengine_loader import trusted_load

NAMES_SHOWN = 3
CONVERTER = 'tools/model_converters/vmamba2mm.py'
# Keys of official VMamba files: classifiers without the backbone. prefix, legacy block names.
OFFICIAL_KEY = re.compile(r'^(layers\.\d+\.blocks\.|patch_embed\.|classifier\.)'
                          r'|\.(ln_1|self_attention)\.|patch_embed\.proj\.')


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


def _looks_official(checkpoint, keys):
    return (isinstance(checkpoint, Mapping) and 'model' in checkpoint) or any(
        OFFICIAL_KEY.search(key) for key in keys)


def _conversion_hint(checkpoint, keys):
    if not _looks_official(checkpoint, keys):
        return ''
    return (f' It looks like an official VMamba checkpoint: convert it first with '
            f'python {CONVERTER} IN.pth OUT.pth.')


def _weights(checkpoint, source):
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
        weights = checkpoint['state_dict']
    elif _is_bare_state_dict(checkpoint):
        weights = checkpoint
    else:
        top = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else []
        raise CheckpointMismatchError(
            f'{source} holds no model weights (no state_dict, and not a state dict itself; '
            f'top-level keys: {top[:8] or type(checkpoint).__name__}).'
            f'{_conversion_hint(checkpoint, [])}')
    # mmengine strips the prefix that DDP-wrapped models were saved with.
    return {key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in weights.items()}


def _first(names):
    shown = ', '.join(names[:NAMES_SHOWN])
    return shown + (', ...' if len(names) > NAMES_SHOWN else '')


def describe_mismatch(weights, expected, unused_prefixes=()):
    """The differences between two state dicts in words, or '' when they fit."""
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights
                  if key not in expected and not key.startswith(tuple(unused_prefixes))]
    reshaped = [f'{key} {tuple(weights[key].shape)} in the checkpoint vs '
                f'{tuple(expected[key].shape)} in the model'
                for key in expected if key in weights
                and tuple(getattr(weights[key], 'shape', ())) !=
                tuple(getattr(expected[key], 'shape', ()))]
    parts = [f'{len(names)} {what} ({_first(names)})' for what, names in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('keys of another shape', reshaped)) if names]
    return '; '.join(parts)


def check_checkpoint_fits(checkpoint, model, source, resuming=False, unused_prefixes=()):
    """Raise CheckpointMismatchError unless checkpoint's weights are exactly model's.

    checkpoint: a loaded runner checkpoint (its ``state_dict``) or a bare state dict.
    unused_prefixes: keys the model is known not to use, allowed in the checkpoint.
    """
    weights = _weights(checkpoint, source)
    mismatch = describe_mismatch(weights, bare_model(model).state_dict(), unused_prefixes)
    if not mismatch:
        return
    lead = (f'cannot resume from {source}: it is a checkpoint of another model' if resuming
            else f'{source} does not fit the model of this config')
    raise CheckpointMismatchError(f'{lead}: {mismatch}.{_conversion_hint(checkpoint, weights)}')


def load_fitting_checkpoint(model, path):
    """Load ``path`` into ``model`` strictly, as the analysis and deployment tools do: the
    project's checkpoints, or official VMamba files converted on load. Raises
    CheckpointContentError for a file that is not a checkpoint and CheckpointMismatchError,
    naming the keys, for one that does not fit; nothing is loaded then."""
    weights = extract_state_dict(trusted_load(path, map_location='cpu'), source=path)
    if looks_official(weights):
        weights = convert_official_state_dict(weights)
    weights = {key[len('module.'):] if key.startswith('module.') else key: value
               for key, value in weights.items()}
    check_checkpoint_fits(weights, model, path)
    model.load_state_dict(weights, strict=True)
