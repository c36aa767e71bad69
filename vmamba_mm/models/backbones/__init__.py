"""Backbones: VSSM, one definition for classification, detection and segmentation."""
from .vssm import VSSM, VSSBlock
from .vssm_arch import ARCH_DEFAULTS, ARCH_KEYS, ARCH_SETTINGS, FORWARD_TYPES, resolve_arch

__all__ = ['VSSM', 'VSSBlock', 'ARCH_SETTINGS', 'ARCH_DEFAULTS', 'ARCH_KEYS', 'FORWARD_TYPES',
           'resolve_arch']
