"""Semantic segmentation: mmseg ``BaseSegDataset`` and its subclasses (``ADE20KDataset`` and the
like), an image folder and a label-map folder.

Checked: missing folders, images without a label map, empty images or label maps, heads whose
``num_classes`` differs, the same ``metainfo.classes`` in every split. Label values and channels
can only be checked by reading every map, so ``ValidateSegLabels`` does it as each one loads.
"""
import inspect
import os
import os.path as osp

from ..class_agreement import SplitClasses
from ..dataset_config import config_classes, is_subclass_of, under_data_root
from ..errors import DataError
from ..files import empty_files, refuse_empty_files
from ..heads import check_head_classes
from ..transforms import add_seg_label_checks
from .base import DatasetLayout, register_layout

SEGMENTATION_FIX = 'give every split the same metainfo.classes, in the same order'


def check_segmentation(cfg, split, dataset_cfg, cls, agreement):
    prefix = dataset_cfg.get('data_prefix') or {}
    image_dir = under_data_root(dataset_cfg, prefix.get('img_path', ''))
    label_dir = prefix.get('seg_map_path')
    label_dir = under_data_root(dataset_cfg, label_dir) if label_dir is not None else None
    defaults = {}
    if cls is not None:
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    img_suffix = dataset_cfg.get('img_suffix', defaults.get('img_suffix', '.jpg'))
    seg_suffix = dataset_cfg.get('seg_map_suffix', defaults.get('seg_map_suffix', '.png'))
    classes = config_classes(dataset_cfg, cls)
    if classes:
        agreement.check(SplitClasses(
            split, classes, 'metainfo.classes', SEGMENTATION_FIX))
    for kind, folder in (('image', image_dir), ('label map', label_dir)):
        if folder is not None and not osp.isdir(folder):
            raise DataError(f'{split}.dataset: {kind} folder not found: {folder} (data_root '
                            f'{dataset_cfg.get("data_root")!r}, data_prefix {dict(prefix)}).')
    ann_file = dataset_cfg.get('ann_file')
    if ann_file:
        ann_file = under_data_root(dataset_cfg, ann_file)
        if not osp.isfile(ann_file):
            raise DataError(f'{split}.dataset: image list (ann_file) not found: {ann_file}.')
        with open(ann_file) as f:
            stems = [line.strip() for line in f if line.strip()]
    else:
        stems = [osp.relpath(osp.join(dirpath, name), image_dir)[:-len(img_suffix)]
                 for dirpath, _, names in os.walk(image_dir) for name in names
                 if name.endswith(img_suffix)]
    if not stems:
        raise DataError(f'{split}.dataset: no *{img_suffix} images in {image_dir}.')
    image_paths = [osp.join(image_dir, s + img_suffix) for s in stems]
    absent_images = [path for path in image_paths if not osp.isfile(path)]
    if absent_images:
        raise DataError(f'{split}.dataset: {len(absent_images)} of the {len(stems)} images '
                        f'{ann_file} lists are not on disk, e.g. {absent_images[:3]}.')
    refuse_empty_files(split, 'image', empty_files(image_paths), len(image_paths))
    if label_dir is not None:
        label_paths = [osp.join(label_dir, s + seg_suffix) for s in stems]
        unlabelled = [image for image, label in zip(image_paths, label_paths)
                      if not osp.isfile(label)]
        if unlabelled:
            raise DataError(f'{split}.dataset: {len(unlabelled)} of {len(stems)} images have no '
                            f'label map ({label_dir}/<name>{seg_suffix}), e.g. {unlabelled[:3]}.')
        refuse_empty_files(split, 'label map', empty_files(label_paths), len(label_paths))
    if classes:
        check_head_classes(cfg, f'{split}.dataset', classes)
    return classes


@register_layout
class SemanticSegmentation(DatasetLayout):
    name = 'segmentation'

    def matches(self, dataset_class, dataset_cfg):
        return is_subclass_of(dataset_class, 'mmseg.datasets', 'BaseSegDataset')

    def training_classes(self, split, dataset_cfg, dataset_class):
        classes = config_classes(dataset_cfg, dataset_class)
        return SplitClasses(split, classes, 'metainfo.classes',
                            SEGMENTATION_FIX) if classes else None

    def check(self, cfg, split, dataset_cfg, dataset_class, agreement):
        return check_segmentation(cfg, split, dataset_cfg, dataset_class, agreement)

    def add_load_checks(self, pipelines, classes):
        if classes:
            for pipeline in pipelines:
                add_seg_label_checks(pipeline, len(classes))
