from .vssm import ARCH_SETTINGS, FORWARD_TYPES, VSSM, resolve_arch

__all__ = ['VSSM', 'ARCH_SETTINGS', 'FORWARD_TYPES', 'resolve_arch']
