"""Folder classification: mmpretrain ``CustomDataset`` (and subclasses) without ``ann_file``, one
folder per class under ``data_root/data_prefix``.

Checked: missing folders, no or empty class folders, empty (0-byte) images, a head whose
``num_classes`` differs from the folder count, the same class folders in every split.
"""
import os
import os.path as osp

from ..class_agreement import SplitClasses
from ..dataset_config import is_subclass_of
from ..errors import DataError
from ..files import empty_files, refuse_empty_files
from .base import DatasetLayout, register_layout

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
FOLDER_FIX = 'rename the class folders so that every split has the same ones'


def _folder_of(dataset_cfg):
    prefix = dataset_cfg.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    return osp.join(dataset_cfg.get('data_root', '') or '', prefix), prefix


def _class_folders(folder):
    """Class folders in label order: mmpretrain numbers them in sorted order."""
    return sorted(d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))


def _images_under(folder):
    """The image files under folder and its subfolders, as mmpretrain collects a class."""
    return [osp.join(dirpath, name) for dirpath, _, names in os.walk(folder, followlinks=True)
            for name in names if name.lower().endswith(IMAGE_EXTENSIONS)]


@register_layout
class FolderClassification(DatasetLayout):
    name = 'folder'

    def matches(self, dataset_class, dataset_cfg):
        return is_subclass_of(dataset_class, 'mmpretrain.datasets', 'CustomDataset') and not \
            dataset_cfg.get('ann_file')

    def training_classes(self, split, dataset_cfg, dataset_class):
        # Class folders count only where they are on disk.
        folder, _ = _folder_of(dataset_cfg)
        if osp.isdir(folder) and _class_folders(folder):
            return SplitClasses(split, tuple(_class_folders(folder)), folder, FOLDER_FIX)
        return None

    def check(self, cfg, split, dataset_cfg, dataset_class, agreement):
        folder, prefix = _folder_of(dataset_cfg)
        if not osp.isdir(folder):
            raise DataError(f'{split}.dataset: image folder not found: {folder} (data_root '
                            f'{dataset_cfg.get("data_root")!r}, data_prefix {prefix!r}).')
        classes = _class_folders(folder)
        if not classes:
            raise DataError(f'{split}.dataset: no class folders in {folder}; the layout is '
                            f'{folder}/<class>/<image>.')
        agreement.check(SplitClasses(split, tuple(classes), folder, FOLDER_FIX))
        images = {c: _images_under(osp.join(folder, c)) for c in classes}
        empty = [osp.join(folder, c) for c in classes if not images[c]]
        if empty:
            raise DataError(f'{split}.dataset: class folder(s) with no images: {empty}.')
        every_image = [path for paths in images.values() for path in paths]
        refuse_empty_files(split, 'image', empty_files(every_image), len(every_image))
        head = (cfg.get('model') or {}).get('head') or {}
        num_classes = head.get('num_classes') if isinstance(head, dict) else None
        if num_classes is not None and num_classes != len(classes):
            raise DataError(f'model.head.num_classes is {num_classes} but {folder} has '
                            f'{len(classes)} class folders {classes}; set --cfg-options '
                            f'model.head.num_classes={len(classes)}.')
        return None  # the classes are folders: nothing for the load checks
