"""The model core: VSSM and its parts, create_model. Needs torch (and vmamba_kernels) only."""
from .factory import FeatureInfo, VSSMClassifier, VSSMFeatures, create_model, list_models
from .vssm import ARCH_SETTINGS, FORWARD_TYPES, VSSM, resolve_arch

__all__ = [
    'VSSM', 'ARCH_SETTINGS', 'FORWARD_TYPES', 'resolve_arch', 'create_model', 'list_models',
    'VSSMClassifier', 'VSSMFeatures', 'FeatureInfo'
]
