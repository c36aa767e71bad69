"""``create_model``: VMamba classifiers and feature extractors the way timm users build models.

Torch only. The classifier has the state-dict keys of the mmpretrain ``ImageClassifier`` built
from ``configs/vmamba/vmamba-<arch>_8xb128_in1k.py`` (``backbone.*``, ``head.fc.*``) and the
same logits, so one converted checkpoint loads into both.
"""
import copy
import fnmatch
import inspect
import logging
import numbers

import torch.nn as nn
import torch.nn.functional as F

from .pretrained import PretrainedMismatchError, load_checked, read_state_dict
from .backbones import ARCH_SETTINGS, VSSM
from .backbones.arch_checks import stage_indices
from .backbones.vssm import no_weight_decay_names

logger = logging.getLogger(__name__)

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
ALL_STAGES = (0, 1, 2, 3)
# The official evaluation (and configs/_base_/datasets/imagenet_bs128_vmamba.py's test
# pipeline): resize the short side to 256, bicubic, then centre-crop 224.
EVAL_SIZE, EVAL_RESIZE = 224, 256
# VSSM arguments create_model passes through; arch and out_indices are its own, and init_cfg is
# what its ``pretrained`` replaces.
MODEL_SETTINGS = frozenset(inspect.signature(VSSM).parameters) - {'arch', 'out_indices',
                                                                   'init_cfg'}


class FeatureInfo:
    """Per-level facts about the maps a model gives, as timm's ``feature_info``.

    Each entry is a dict with ``num_chs`` (channels), ``reduction`` (stride against the input),
    ``module`` (the module whose output the map is) and ``index`` (the stage). A feature
    extractor's entries are in the order of its maps, which is the order ``out_indices`` named
    the stages.
    """

    def __init__(self, entries):
        self.info = [dict(entry) for entry in entries]

    def _get(self, key, idx):
        if idx is None:
            return [entry[key] for entry in self.info]
        if isinstance(idx, (list, tuple)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def channels(self, idx=None):
        return self._get('num_chs', idx)

    def reduction(self, idx=None):
        return self._get('reduction', idx)

    def module_name(self, idx=None):
        return self._get('module', idx)

    def get_dicts(self):
        return [dict(entry) for entry in self.info]

    def __getitem__(self, idx):
        return self.info[idx]

    def __iter__(self):
        return iter(self.info)

    def __len__(self):
        return len(self.info)

    def __repr__(self):
        return f'FeatureInfo({self.info})'


def _stage_info(backbone, stages, module_of):
    return FeatureInfo(
        dict(num_chs=backbone.dims[i], reduction=backbone.patch_size * 2**i,
             module=module_of(i), index=i) for i in stages)


class ClassifierHead(nn.Module):
    """Global average pooling and a Linear: mmpretrain's GlobalAveragePooling neck and
    LinearClsHead, under the same key (``fc``)."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.in_channels = in_channels
        self.fc = self._classifier(in_channels, num_classes)

    @staticmethod
    def _classifier(in_channels, num_classes):
        if num_classes == 0:
            return nn.Identity()
        fc = nn.Linear(in_channels, num_classes)
        nn.init.trunc_normal_(fc.weight, std=0.02)  # the official (and config) head init
        nn.init.zeros_(fc.bias)
        return fc

    def reset(self, num_classes):
        self.fc = self._classifier(self.in_channels, num_classes)

    def forward(self, x, pre_logits=False):
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.fc(x)


class VSSMClassifier(nn.Module):
    """VSSM backbone (last stage, with its output norm), average pooling, Linear head.

    ``num_classes=0`` leaves out the Linear: the model returns the pooled features.
    """

    def __init__(self, arch, num_classes=1000, **settings):
        super().__init__()
        self.backbone = VSSM(arch, out_indices=(-1, ), **settings)
        self.num_classes = num_classes
        self.num_features = self.backbone.dims[-1]
        self.head = ClassifierHead(self.num_features, num_classes)
        self.feature_info = _stage_info(self.backbone, range(self.backbone.num_stages),
                                        lambda i: f'backbone.layers.{i}.blocks')

    def forward_features(self, x):
        """The last stage's normalised (B, C, H/32, W/32) map."""
        return self.backbone(x)[-1]

    def forward_head(self, x, pre_logits=False):
        """Logits from a ``forward_features`` map; ``pre_logits``: the pooled features."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x, indices=None, norm=False, stop_early=False,
                              output_fmt='NCHW', intermediates_only=False):
        """Stage maps along with the final features, as timm's ``forward_intermediates``.

        Args:
            indices: None for every stage, an int n for the last n stages, or a sequence of
                stage numbers (negatives from the end). The maps come in the order named, as
                with ``features_only``'s ``out_indices``; a stage named twice is an error.
            norm: pass each map through its stage's output norm. The classifier has one for
                the last stage only (``backbone.outnorm3``, the official ``classifier.norm``);
                asking for another stage's is an error.
            stop_early: with ``intermediates_only``, run no stage past the last one asked for.
            output_fmt: 'NCHW' or 'NHWC'.
            intermediates_only: return the list of maps alone.

        Returns:
            ``(final, maps)``: ``final`` is ``forward_features(x)``; or ``maps`` alone.
        """
        stages = intermediate_stages(indices, self.backbone.num_stages)
        last = self.backbone.num_stages - 1
        needed = stages if intermediates_only else sorted({*stages, last})
        maps = self.backbone.run_stages(x, needed, stop_early=stop_early and intermediates_only)
        intermediates = [self.backbone.output_map(i, maps[i], norm=norm, output_fmt=output_fmt)
                         for i in stages]
        if intermediates_only:
            return intermediates
        return self.backbone.output_map(last, maps[last]), intermediates

    def set_grad_checkpointing(self, enable=True):
        """Checkpoint every block while training (``torch.utils.checkpoint``): activations are
        recomputed in the backward pass instead of kept; the gradients do not change."""
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self):
        """The parameter names the training recipe exempts from weight decay (see
        ``no_weight_decay_names``), for timm's optimizer factory and the like."""
        return no_weight_decay_names(self)

    def get_classifier(self):
        return self.head.fc

    def reset_classifier(self, num_classes):
        """A new, freshly initialised Linear for ``num_classes`` (0: none)."""
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        self.head.reset(num_classes)
        if hasattr(self, 'pretrained_cfg'):
            self.pretrained_cfg['num_classes'] = num_classes


class VSSMFeatures(nn.Module):
    """VSSM backbone returning the normalised NCHW maps of ``out_indices`` as a list, in the
    order ``out_indices`` names the stages (``feature_info`` is in the same order)."""

    def __init__(self, arch, out_indices=ALL_STAGES, **settings):
        super().__init__()
        self.backbone = VSSM(arch, out_indices=out_indices, **settings)
        self.feature_info = _stage_info(self.backbone, self.backbone.out_indices,
                                        lambda i: f'backbone.outnorm{i}')

    def forward(self, x):
        return list(self.backbone(x))

    def set_grad_checkpointing(self, enable=True):
        """As ``VSSMClassifier.set_grad_checkpointing``."""
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self):
        """As ``VSSMClassifier.no_weight_decay``."""
        return no_weight_decay_names(self)


def intermediate_stages(indices, num_stages):
    """``forward_intermediates``' ``indices`` as stage numbers: None all, an int n the last n."""
    if indices is None:
        return list(range(num_stages))
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        if not 1 <= indices <= num_stages:
            raise ValueError(f'indices={indices}: an int takes the last n stages, n in '
                             f'1..{num_stages}; pass a list such as [{indices}] for one stage.')
        return list(range(num_stages - indices, num_stages))
    return stage_indices(indices, num_stages, name='indices')


def list_models(pattern=None):
    """The arch names create_model takes, the released VMamba ones and those of the other scan
    families (optionally those matching a glob pattern)."""
    names = list(ARCH_SETTINGS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def _check_num_classes(num_classes):
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) \
            or num_classes < 0:
        raise ValueError(f'num_classes must be an int >= 0 (0: no classifier, the model returns '
                         f'pooled features), got {num_classes!r}.')


def _pretrained_cfg(arch, model, num_classes, features_only, pretrained):
    in_channels = model.backbone.in_channels
    cfg = dict(
        architecture=arch if isinstance(arch, str) else 'custom arch',
        input_size=(in_channels, EVAL_SIZE, EVAL_SIZE),
        crop_pct=EVAL_SIZE / EVAL_RESIZE,
        crop_mode='center',
        interpolation='bicubic',
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        num_classes=0 if features_only else num_classes,
        first_conv='backbone.patch_embed.0',
        classifier=None if features_only else 'head.fc',
    )
    if pretrained is not None:
        cfg['file'] = str(pretrained)
    return cfg


def _load_classifier_weights(model, pretrained, arch_label):
    state_dict = read_state_dict(pretrained)
    head_keys = [k for k in state_dict if k.startswith('head.')]
    hint = 'Check that the arch is the one the checkpoint was trained with.'
    weight = state_dict.get('head.fc.weight')
    if weight is not None and model.num_classes and weight.shape[0] != model.num_classes:
        hint += (f' Its head has {weight.shape[0]} classes: create the model with '
                 f'num_classes={weight.shape[0]}, then model.reset_classifier('
                 f'{model.num_classes}) for a new head.')
    if model.num_classes == 0:
        # No Linear asked for: the file's head is not used; everything else must fit.
        state_dict = {k: v for k, v in state_dict.items() if k not in head_keys}
    load_checked(model, state_dict, pretrained,
                 f'{arch_label} classifier with num_classes={model.num_classes}', hint=hint)
    message = f'Loaded {len(state_dict)} tensors from {pretrained} into the {arch_label} ' \
              f'classifier.'
    if model.num_classes == 0 and head_keys:
        message += f' Not used (num_classes=0, no classifier): {sorted(head_keys)}.'
    logger.info(message)


def _load_feature_weights(model, pretrained, arch_label):
    state_dict = read_state_dict(pretrained)
    if not any(k.startswith('backbone.') for k in state_dict):
        raise PretrainedMismatchError(
            f'Checkpoint {pretrained!r} has no backbone.* keys; it is not a VSSM checkpoint '
            f'(first keys: {list(state_dict)[:5]}).')
    weights = {k: v for k, v in state_dict.items() if k.startswith('backbone.')}
    unused = sorted(k for k in state_dict if k not in weights)
    fresh = load_checked(
        model, weights, pretrained, f'{arch_label} feature extractor',
        may_be_missing=('backbone.outnorm', ),
        hint='Check that the arch is the one the checkpoint was trained with.')
    message = f'Loaded {len(weights)} backbone tensors from {pretrained} into the ' \
              f'{arch_label} feature extractor.'
    if fresh:
        message += (f' Not in the checkpoint, initialised as identity (expected for per-stage '
                    f'output norms a classification checkpoint lacks): {fresh}.')
    if unused:
        message += (f' Not used (features_only has no classifier or other heads): '
                    f'{len(unused)} keys, {unused[:4]}{" ..." if len(unused) > 4 else ""}.')
    logger.info(message)


def create_model(arch, pretrained=None, num_classes=1000, features_only=False,
                 out_indices=ALL_STAGES, **settings):
    """A VMamba image classifier, or with ``features_only=True`` a multi-scale feature extractor.

    Args:
        arch: a released arch name (``list_models()``) or an arch dict (see ``VSSM``).
        pretrained: None, or the path (or URL) of a checkpoint: an official release file (its
            ``model`` weights, keys converted), a file converted by
            ``tools/model_converters/vmamba2mm.py``, or a checkpoint of this project. Read with
            the restricted unpickler (nothing in the file runs) and loaded strictly: a missing,
            unexpected or misshapen key raises, naming the file and the keys. With
            ``features_only`` the file's non-backbone keys (the classifier head) are not used
            and missing per-stage output norms start as identity; the log says both.
        num_classes: classes of the Linear head; 0 for none (the model returns pooled features).
            Ignored with ``features_only``.
        features_only: return the maps of ``out_indices`` instead of logits.
        out_indices: the stages whose normalised NCHW maps a feature extractor returns
            (strides 4, 8, 16, 32), in the order named; ``feature_info`` follows the same
            order. Only with ``features_only``.
        **settings: passed to ``VSSM``: ``drop_path_rate``, ``channel_first``, ``scan_backend``,
            ``in_channels``, ``frozen_stages``, ``norm_eval``, ``with_cp``.

    The model carries ``pretrained_cfg`` (input size, crop, interpolation, mean/std of the
    official evaluation, on the 0-1 scale) and ``feature_info``.
    """
    unknown = sorted(set(settings) - MODEL_SETTINGS)
    if unknown:
        raise TypeError(f'create_model got unknown setting(s) {unknown}; it takes arch, '
                        f'pretrained, num_classes, features_only, out_indices and the VSSM '
                        f'settings {sorted(MODEL_SETTINGS)}.')
    if pretrained is True:
        raise ValueError('pretrained=True: vmamba-mm has no weight registry to download from; '
                         'pass the path of a checkpoint (an official release file or a '
                         'converted one).')
    if pretrained is False:
        pretrained = None
    arch_label = arch if isinstance(arch, str) else 'custom-arch'
    if features_only:
        model = VSSMFeatures(copy.deepcopy(arch), out_indices=out_indices, **settings)
        if pretrained is not None:
            _load_feature_weights(model, pretrained, arch_label)
    else:
        if not (isinstance(out_indices, (list, tuple)) and tuple(out_indices) == ALL_STAGES):
            raise ValueError(f'out_indices={out_indices!r} applies only to a feature '
                             f'extractor: pass features_only=True, or leave it out.')
        _check_num_classes(num_classes)
        model = VSSMClassifier(copy.deepcopy(arch), num_classes=num_classes, **settings)
        if pretrained is not None:
            _load_classifier_weights(model, pretrained, arch_label)
    model.pretrained_cfg = _pretrained_cfg(arch, model, num_classes, features_only, pretrained)
    return model
