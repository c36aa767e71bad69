"""Official VMamba figures: the oracles of the model, config and checkpoint tests.

Every number is the official release's as the project's reference notes give them (section 1, "The
nine released classification architectures"; section 2, "Detection and segmentation"), checked
against them when this table was written. None comes from this project's code.
"""
import json
from collections import OrderedDict
from typing import NamedTuple, Optional

import torch

from tests.paths import OFFICIAL_KEYS_JSON


class Classifier(NamedTuple):
    constructor: str  # the official constructor, also its key in OFFICIAL_KEYS_JSON
    params: int  # exact parameter count of the ImageNet-1k classifier (1000 classes)
    dims: int  # channels of the first stage (doubled at each later one)
    drop_path_rate: float  # stochastic depth of the released training recipe


# Our arch name -> the released classifier.
CLASSIFIERS = {
    'vanilla-tiny': Classifier('vanilla_vmamba_tiny', 22_893_448, 96, 0.2),
    'vanilla-small': Classifier('vanilla_vmamba_small', 44_417_416, 96, 0.3),
    'vanilla-base': Classifier('vanilla_vmamba_base', 76_254_056, 128, 0.6),
    'tiny-s2l5': Classifier('vmamba_tiny_s2l5', 30_705_832, 96, 0.2),
    'small-s2l15': Classifier('vmamba_small_s2l15', 50_147_752, 96, 0.3),
    'base-s2l15': Classifier('vmamba_base_s2l15', 88_557_800, 128, 0.6),
    'tiny-s1l8': Classifier('vmamba_tiny_s1l8', 30_249_064, 96, 0.2),
    'small-s1l20': Classifier('vmamba_small_s1l20', 49_012_840, 96, 0.3),
    'base-s1l20': Classifier('vmamba_base_s1l20', 86_614_504, 128, 0.5),
}

# 2DVMamba (2DMamba's release, scan-families.md section 1): a VMamba arch with the 2D scan and no
# new parameters. Our arch name -> (the VMamba arch it extends, the official config name).
VMAMBA_2D = {
    '2dvmamba-tiny': ('tiny-s1l8', 'vmambav2v_2d_tiny_224'),
    '2dvmamba-small': ('small-s2l15', 'vmambav2_2d_small_224'),
}


class Downstream(NamedTuple):
    arch: str
    params: int  # the whole model: backbone, neck and heads (COCO 80 / ADE20K 150 classes)
    backbone_params: Optional[int]  # the reference gives it for the Mask R-CNN models only


# Our config (relative to configs/, without .py) -> the released model. The 3x models are the 1x
# models trained longer: the same counts.
DOWNSTREAM = {
    'mask_rcnn/mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco': Downstream(
        'tiny-s1l8', 49_755_312, 29_481_408),
    'mask_rcnn/mask-rcnn_vmamba-tiny-s2l5_fpn_1x_coco': Downstream(
        'tiny-s2l5', 50_212_080, 29_938_176),
    'mask_rcnn/mask-rcnn_vmamba-small-s2l15_fpn_1x_coco': Downstream(
        'small-s2l15', 69_654_000, 49_380_096),
    'mask_rcnn/mask-rcnn_vmamba-base-s2l15_fpn_1x_coco': Downstream(
        'base-s2l15', 107_931_376, 87_534_592),
    'mask_rcnn/mask-rcnn_vmamba-tiny-s1l8_fpn_ms-3x_coco': Downstream(
        'tiny-s1l8', 49_755_312, 29_481_408),
    'mask_rcnn/mask-rcnn_vmamba-tiny-s2l5_fpn_ms-3x_coco': Downstream(
        'tiny-s2l5', 50_212_080, 29_938_176),
    'mask_rcnn/mask-rcnn_vmamba-small-s2l15_fpn_ms-3x_coco': Downstream(
        'small-s2l15', 69_654_000, 49_380_096),
    'upernet/upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512': Downstream(
        'tiny-s1l8', 61_902_572, None),
    'upernet/upernet_vmamba-tiny-s2l5_8xb2-160k_ade20k-512x512': Downstream(
        'tiny-s2l5', 62_359_340, None),
    'upernet/upernet_vmamba-small-s2l15_8xb2-160k_ade20k-512x512': Downstream(
        'small-s2l15', 81_801_260, None),
    'upernet/upernet_vmamba-base-s2l15_8xb2-160k_ade20k-512x512': Downstream(
        'base-s2l15', 122_069_292, None),
}

# The dense-prediction backbone (one output norm per stage) is the same whatever the head, so the
# Mask R-CNN rows give the UperNet backbones' counts too.
DOWNSTREAM_BACKBONE_PARAMS = {
    model.arch: model.backbone_params for model in DOWNSTREAM.values()
    if model.backbone_params is not None}

# Stochastic depth of the released Mask R-CNN recipe by model size (0.2 / 0.3 / 0.6); the UperNet
# configs take the same.
DOWNSTREAM_DROP_PATH = {'tiny-s1l8': 0.2, 'tiny-s2l5': 0.2, 'small-s2l15': 0.3, 'base-s2l15': 0.6}

# Key suffixes of the selective-scan parameters in the official state dicts: A (as log), D and the
# dt bias, which the recipes keep out of weight decay.
SSM_PARAMETERS = ('A_logs', 'Ds', 'dt_projs_bias')


def load_official_keys():
    """{constructor: {'params': count, 'state_dict': {key: shape}}} of the nine classifiers, as
    the official model code builds them; a fresh copy on each call."""
    with open(OFFICIAL_KEYS_JSON) as f:
        return json.load(f)


def random_official_state_dict(constructor, seed):
    """Normal random weights under every key of the official classifier ``constructor``, with its
    shapes and in its order: what a released checkpoint's ``model`` holds, values aside."""
    generator = torch.Generator().manual_seed(seed)
    shapes = load_official_keys()[constructor]['state_dict']
    return OrderedDict((key, torch.randn(shape, generator=generator))
                       for key, shape in shapes.items())

# GFLOPs (multiply-adds, fvcore's convention) of the nine classifiers at 224x224, as the
# reference's section 1 table and the issue give them (the whole classifier, head included).
OFFICIAL_GFLOPS = {
    'vanilla-tiny': 5.627, 'vanilla-small': 11.23, 'vanilla-base': 18.02,
    'tiny-s2l5': 4.858, 'small-s2l15': 8.716, 'base-s2l15': 15.359,
    'tiny-s1l8': 4.906, 'small-s1l20': 8.612, 'base-s1l20': 15.221,
}

# Released detection and segmentation totals (official README: Mask R-CNN VMamba-T[s1l8] 271G,
# UperNet VMamba-T[s1l8] 949G), and the figures the official counting script
# (analyze/flops.py) printed for them: Mask R-CNN on a (3, 1280, 800) input, UperNet on
# (3, 512, 2048), in GFLOPs. Our config -> (README figure, script figure).
OFFICIAL_DOWNSTREAM_GFLOPS = {
    'mask_rcnn/mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco': (271, 271.163376640),
    'upernet/upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512': (949, 948.780189696),
}


def official_layout(state_dict):
    """Our classifier's keys under the official release's names (reference notes, section 1):
    backbone keys without the prefix, the last output norm as classifier.norm, the Linear as
    classifier.head. Values are cloned."""
    official = {}
    for key, value in state_dict.items():
        if key.startswith('backbone.outnorm3.'):
            key = 'classifier.norm.' + key[len('backbone.outnorm3.'):]
        elif key.startswith('head.fc.'):
            key = 'classifier.head.' + key[len('head.fc.'):]
        else:
            key = key[len('backbone.'):]
        official[key] = value.clone()
    return official
