"""Register the project's models once into the MODELS registries of mmpretrain, mmdet, mmseg.

The segmentation label check (a data transform) goes into mmseg's TRANSFORMS.
"""
import importlib

from .data_checks import ValidateSegLabels
from .models import VSSM

TASK_PACKAGES = ('mmpretrain', 'mmdet', 'mmseg')
registered_in = []


def register_all_modules():
    for package in TASK_PACKAGES:
        if package in registered_in:
            continue
        try:
            registry = importlib.import_module(f'{package}.registry')
        except ImportError:
            continue  # that task package is not installed; the others still work
        registry.MODELS.register_module(name='VSSM', module=VSSM, force=True)
        if package == 'mmseg':
            registry.TRANSFORMS.register_module(name='ValidateSegLabels',
                                                module=ValidateSegLabels, force=True)
        registered_in.append(package)
    return list(registered_in)
