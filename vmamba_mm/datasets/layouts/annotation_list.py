"""Annotation-list classification: mmpretrain ``CustomDataset`` (``ImageNet`` and the other
subclasses) with an ``ann_file`` of ``<image path> <label>`` lines, image paths relative to
``data_root/data_prefix`` (ImageNet's ``meta/train.txt`` and ``meta/val.txt``).

Checked: a missing annotation list or image folder, lines that are not ``<path> <label>``,
labels outside the head's classes, listed images that are not on disk or are empty, the same
classes in every split where the config names them.
"""
import os.path as osp

from ..class_agreement import SplitClasses
from ..dataset_config import config_classes, is_subclass_of, under_data_root
from ..errors import DataError
from ..files import empty_files, refuse_empty_files
from .base import DatasetLayout, register_layout

LIST_FIX = 'give every split the same metainfo.classes, in the same order'


def _image_folder(dataset_cfg):
    prefix = dataset_cfg.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    return osp.join(dataset_cfg.get('data_root', '') or '', prefix or ''), prefix


def _read_list(split, ann_file, with_label):
    """(line number, image path, label or None) of every line, parsed as mmpretrain parses it
    (the label after the last space); a line it would fail on is named."""
    entries = []
    with open(ann_file, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not with_label:
                entries.append((number, text, None))
                continue
            path, _, label = text.rpartition(' ')
            if not path or not label.lstrip('-').isdigit():
                raise DataError(f'{split}.dataset: line {number} of {ann_file} is {text!r}, not '
                                f'"<image path> <integer label>"; fix or remove the line.')
            entries.append((number, path, int(label)))
    return entries


def _head_classes(cfg, classes):
    head = (cfg.get('model') or {}).get('head') or {}
    num_classes = head.get('num_classes') if isinstance(head, dict) else None
    if isinstance(num_classes, int):
        return num_classes, 'model.head.num_classes'
    if classes:
        return len(classes), 'the classes of the dataset'
    return None, None


@register_layout
class AnnotationListClassification(DatasetLayout):
    name = 'annotation list'

    def matches(self, dataset_class, dataset_cfg):
        return is_subclass_of(dataset_class, 'mmpretrain.datasets', 'CustomDataset') and bool(
            dataset_cfg.get('ann_file'))

    def training_classes(self, split, dataset_cfg, dataset_class):
        classes = config_classes(dataset_cfg, dataset_class)
        return SplitClasses(split, classes, 'metainfo.classes', LIST_FIX) if classes else None

    def check(self, cfg, split, dataset_cfg, dataset_class, agreement):
        given = dataset_cfg.get('ann_file')
        ann_file = under_data_root(dataset_cfg, given)
        folder, prefix = _image_folder(dataset_cfg)
        if not osp.isfile(ann_file):
            raise DataError(f'{split}.dataset: annotation list not found: {ann_file} (data_root '
                            f'{dataset_cfg.get("data_root")!r}, ann_file {given!r}); it lists '
                            f'one "<image path under {folder}> <label>" per line. Point '
                            f'{split}.dataset.data_root at the dataset, or create the file.')
        if not osp.isdir(folder):
            raise DataError(f'{split}.dataset: image folder not found: {folder} (data_root '
                            f'{dataset_cfg.get("data_root")!r}, data_prefix {prefix!r}).')
        classes = config_classes(dataset_cfg, dataset_class)
        if classes:
            agreement.check(SplitClasses(split, classes, 'metainfo.classes', LIST_FIX))
        entries = _read_list(split, ann_file, dataset_cfg.get('with_label', True))
        if not entries:
            raise DataError(f'{split}.dataset: the annotation list {ann_file} is empty.')
        num_classes, counted_by = _head_classes(cfg, classes)
        if num_classes is not None:
            for number, _, label in entries:
                if label is not None and not 0 <= label < num_classes:
                    raise DataError(f'{split}.dataset: line {number} of {ann_file} has label '
                                    f'{label}, outside 0..{num_classes - 1} ({counted_by} is '
                                    f'{num_classes}); fix the label or the class count.')
        paths = [osp.join(folder, path) for _, path, _ in entries]
        absent = [path for path in paths if not osp.isfile(path)]
        if absent:
            raise DataError(f'{split}.dataset: {len(absent)} of the {len(paths)} images '
                            f'{ann_file} lists are not on disk, e.g. {absent[:3]}.')
        refuse_empty_files(split, 'image', empty_files(paths), len(paths))
        return None  # labels are checked above: nothing for the load checks
