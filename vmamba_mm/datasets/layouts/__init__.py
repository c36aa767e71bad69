"""The dataset layouts the pre-run data checks know, one file each (see ``base``).

A new layout is a new file here with a ``register_layout`` class, and its name on the line below.
"""
from . import annotation_list, coco, folder, segmentation, wsi  # noqa: F401 (each registers it)
from .base import LAYOUTS, DatasetLayout, layout_of, register_layout

__all__ = ['LAYOUTS', 'DatasetLayout', 'layout_of', 'register_layout']
