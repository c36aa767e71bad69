"""vmamba-mm: VMamba-family backbones for mmpretrain, mmdet and mmseg.

Importing the package (configs do it through ``custom_imports``) registers ``VSSM`` in all three
task registries and installs the checkpoint loader that works on torch >= 2.6.
"""
from . import loops  # noqa: F401  (registers RawAndEMAValLoop)
from . import hooks  # noqa: F401  (registers the checkpoint and loss hooks)
from .models import VSSM  # noqa: F401
from .registry import register_all_modules

__version__ = '0.1.0'

register_all_modules()
try:
    from .checkpoint import register_checkpoint_loader
except ImportError:  # the checkpoint module arrives with the converter
    register_checkpoint_loader = None
if register_checkpoint_loader is not None:
    register_checkpoint_loader()
