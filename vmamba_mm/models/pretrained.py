"""Loading pretrained weights into a VSSM backbone: loudly, never into a silent random init.

Accepts the project's own checkpoints (``state_dict`` with ``backbone.*``), converted official
files, and official files as released (``model``/``state_dict``, converted on the fly).
"""
import os.path as osp

from mmengine.logging import print_log

from ..checkpoint import convert_official_state_dict, extract_state_dict


def _backbone_keys(state_dict, prefix):
    """Keys of the backbone, with the prefix removed, and the keys that are not the backbone's."""
    if prefix is None:
        prefix = 'backbone.' if any(k.startswith('backbone.') for k in state_dict) else ''
    if not prefix:
        return dict(state_dict), []
    ours = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    others = [k for k in state_dict if not k.startswith(prefix)]
    return ours, others


def _looks_official(state_dict):
    return any(k.startswith(('classifier.', 'layers.', 'patch_embed.')) for k in state_dict) or \
        any('.ln_1.' in k or '.self_attention.' in k for k in state_dict)


def load_pretrained_backbone(backbone, checkpoint, prefix=None, map_location='cpu'):
    """Load ``checkpoint`` into ``backbone``; raise listing every mismatch.

    The per-stage output norms (``outnorm{i}``) may be absent from the file (a classification
    checkpoint has only the last stage's): they keep their identity initialisation and the log
    says so. Any other missing key, any unexpected backbone key, or a shape mismatch raises.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if '://' not in str(checkpoint) and not osp.isfile(osp.expanduser(str(checkpoint))):
        raise FileNotFoundError(
            f'VSSM pretrained checkpoint not found: {checkpoint!r} (from init_cfg.checkpoint). '
            f'Fix the path, or remove init_cfg to train from scratch on purpose.')
    raw = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    state_dict = extract_state_dict(raw, source=str(checkpoint))
    if _looks_official(state_dict):
        state_dict = convert_official_state_dict(state_dict)
    weights, ignored = _backbone_keys(state_dict, prefix)
    own = backbone.state_dict()
    missing = [k for k in own if k not in weights]
    fresh = [k for k in missing if k.startswith('outnorm')]
    missing = [k for k in missing if k not in fresh]
    unexpected = [k for k in weights if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in weights if k in own and weights[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        arch = getattr(backbone, 'arch_name', None) or 'the configured arch'
        raise KeyError(
            f'Checkpoint {checkpoint!r} does not match this VSSM ({arch}).\n'
            f'  missing keys ({len(missing)}): {missing}\n'
            f'  unexpected keys ({len(unexpected)}): {unexpected}\n'
            f'  shape mismatches ({len(mismatched)}): {mismatched}\n'
            f'Check that the config arch is the one the checkpoint was trained with, and the '
            f"init_cfg prefix (now {prefix!r}).")
    backbone.load_state_dict(weights, strict=False)
    message = f'Loaded VSSM backbone weights from {checkpoint}: {len(weights)} tensors.'
    if fresh:
        message += (f' Not in the checkpoint, initialised as identity (expected for per-stage '
                    f'output norms a classification checkpoint lacks): {sorted(fresh)}.')
    if ignored:
        message += f' Ignored {len(ignored)} non-backbone keys (e.g. {ignored[:3]}).'
    print_log(message, logger='current')
    return weights
