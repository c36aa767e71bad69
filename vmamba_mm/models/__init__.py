"""The model core: backbones (VSSM), token mixers, layers, create_model. Needs torch (and
vmamba_kernels) only."""
from .backbones import (ARCH_DEFAULTS, ARCH_KEYS, ARCH_SETTINGS, FORWARD_TYPES, VSSM, VSSBlock,
                        resolve_arch)
from .factory import FeatureInfo, VSSMClassifier, VSSMFeatures, create_model, list_models
from .host_memory import retain_freed_memory
from .mixers import MIXERS, SS2D, TokenMixer, build_mixer

__all__ = [
    'VSSM', 'VSSBlock', 'ARCH_SETTINGS', 'ARCH_DEFAULTS', 'ARCH_KEYS', 'FORWARD_TYPES',
    'resolve_arch', 'create_model', 'list_models', 'VSSMClassifier', 'VSSMFeatures', 'FeatureInfo',
    'MIXERS', 'TokenMixer', 'SS2D', 'build_mixer', 'retain_freed_memory'
]
