"""vmamba-mm: VMamba-family backbones, with torch alone or in mmpretrain, mmdet and mmseg.

The model core (``create_model``, ``VSSM``, checkpoint reading) needs only torch. Where mmengine
is installed, importing the package (configs do it through ``custom_imports``) also registers
``VSSM`` in the task registries, the hooks, loops and data checks, and the checkpoint loader that
works on torch >= 2.6 (see ``vmamba_mm.registry``), and the model names (``vmamba_mm.apis``).

The package by concern: ``models`` (the backbone, torch alone), ``checkpoint`` (reading,
conversion, fit), ``config`` (checks before a run), ``datasets`` (data checks, one file per
dataset layout), ``engine`` (the train and test commands and the Runner set-up), ``apis`` (the
model index), ``analysis`` and ``deployment`` (used by the tools).
"""
import importlib.util

from .models import VSSM, create_model, list_models

__version__ = '0.1.0'
__all__ = ['VSSM', 'create_model', 'list_models']

if importlib.util.find_spec('mmengine') is not None:
    from .registry import register_all_modules
    register_all_modules()
    # The model names for mmpretrain's get_model and the vmamba-mm:// checkpoint files.
    from .apis import model_index  # noqa: F401,E402
