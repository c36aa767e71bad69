"""What users call by name: the shipped configs in the model index (``model_index``).

Importing ``model_index`` registers the classifiers with mmpretrain's ``get_model`` and the
``vmamba-mm://`` checkpoint scheme with mmengine, where those are installed.
"""
from .model_index import UnknownModelError, find_model, list_names

__all__ = ['UnknownModelError', 'find_model', 'list_names']
