"""COCO instances: mmdet ``CocoDataset`` and its subclasses, one annotation JSON per split.

Checked: a missing or malformed annotation file, annotations or images the file references but
that do not exist or are empty, config classes that are not categories of the file, heads whose
``num_classes`` differs from the classes, the same classes in every split; boxes that mmdet drops
(no area, or outside the image) are counted in the log.
"""
import json
import os.path as osp

from mmengine.logging import print_log

from ..class_agreement import SplitClasses
from ..dataset_config import config_classes, is_subclass_of, under_data_root
from ..errors import DataError
from ..files import empty_files, refuse_empty_files
from ..heads import check_head_classes
from .base import DatasetLayout, register_layout

COCO_FIX = ("give every split's annotation file a category of each of the config's classes "
            '(names are matched, ids may differ)')


def _box_dropped_by_mmdet(ann, image):
    """Whether mmdet 3.3's CocoDataset.parse_data_info leaves this annotation out.

    Its rule, in its order: a box with no overlap with the image, then a non-positive area or a
    width or height below one pixel.
    """
    x1, y1, w, h = ann['bbox']
    inter_w = max(0, min(x1 + w, image['width']) - max(x1, 0))
    inter_h = max(0, min(y1 + h, image['height']) - max(y1, 0))
    return inter_w * inter_h == 0 or ann['area'] <= 0 or w < 1 or h < 1


def _log_dropped_boxes(split, ann_file, coco, classes, categories):
    """Count, once in the log, the annotations of the config's classes that mmdet drops."""
    images = {image['id']: image for image in coco['images']}
    used = [ann for ann in coco['annotations']
            if not ann.get('ignore', False) and categories[ann['category_id']] in classes]
    try:
        dropped = [ann['id'] for ann in used if _box_dropped_by_mmdet(ann, images[ann['image_id']])]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f'{split}.dataset: malformed entry in {ann_file}: {exc!r} (annotations '
                        f'need bbox [x, y, width, height] and area, images width and '
                        f'height).') from exc
    if dropped:
        print_log(f'{split}: {len(dropped)} of the {len(used)} annotations in {ann_file} have a '
                  f'box that mmdet drops (width, height or area not positive, or no overlap '
                  f'with the image), e.g. annotation ids {dropped[:5]}; they are neither trained '
                  f'on nor loaded as ground truth.', logger='current', level=30)


def check_coco(cfg, split, dataset_cfg, cls, agreement):
    ann_file = under_data_root(dataset_cfg, dataset_cfg.get('ann_file') or '')
    if not ann_file:
        raise DataError(f'{split}.dataset ({dataset_cfg.get("type")}) has no ann_file; set it '
                        f'to the COCO annotation JSON, e.g. annotations/instances_train2017.json.')
    if not osp.isfile(ann_file):
        raise DataError(f'{split}.dataset: annotation file not found: {ann_file} (data_root '
                        f'{dataset_cfg.get("data_root")!r}, ann_file '
                        f'{dataset_cfg.get("ann_file")!r}).')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f'{split}.dataset: annotation file is not valid JSON: {ann_file} '
                        f'({exc}).') from exc
    missing = [k for k in ('images', 'annotations', 'categories')
               if not isinstance(coco, dict) or not isinstance(coco.get(k), list)]
    if missing:
        raise DataError(f'{split}.dataset: {ann_file} is not a COCO instance file: it has no '
                        f'{missing} list(s).')
    try:
        images = {image['id']: image['file_name'] for image in coco['images']}
        categories = {category['id']: category['name'] for category in coco['categories']}
        referenced = [(ann['id'], ann['image_id'], ann['category_id'])
                      for ann in coco['annotations']]
    except (KeyError, TypeError) as exc:
        raise DataError(f'{split}.dataset: malformed entry in {ann_file}: missing field {exc} '
                        f'(images need id and file_name, categories id and name, annotations '
                        f'id, image_id and category_id).') from exc
    orphans = sorted({image_id for _, image_id, _ in referenced if image_id not in images})
    if orphans:
        raise DataError(f'{split}.dataset: {ann_file} has annotations for image ids that are not '
                        f'in its images list: {orphans[:10]}.')
    unknown = sorted({cat for _, _, cat in referenced if cat not in categories})
    if unknown:
        raise DataError(f'{split}.dataset: {ann_file} has annotations with category ids '
                        f'{unknown[:10]} that are not in its categories list.')

    prefix = dataset_cfg.get('data_prefix') or {}
    image_dir = under_data_root(dataset_cfg, prefix.get('img', '') if isinstance(prefix, dict)
                            else prefix)
    paths = [osp.join(image_dir, name) for name in images.values()]
    absent = [path for path in paths if not osp.isfile(path)]
    if absent:
        raise DataError(f'{split}.dataset: {len(absent)} of the {len(images)} images {ann_file} '
                        f'lists are not on disk, e.g. {absent[:3]}; check data_root and '
                        f'data_prefix.img.')
    refuse_empty_files(split, 'image', empty_files(paths), len(paths))

    classes = config_classes(dataset_cfg, cls)
    if classes:
        names = set(categories.values())
        agreement.check(SplitClasses(
            split, tuple(c for c in classes if c in names), ann_file, COCO_FIX))
        not_in_file = [c for c in classes if c not in names]
        if not_in_file:
            raise DataError(f'{split}.dataset: the config\'s classes {not_in_file} are not '
                            f'categories of {ann_file}, whose category names are '
                            f'{sorted(names)[:20]}; set metainfo.classes to names of the file.')
        skipped = sum(1 for _, _, cat in referenced if categories[cat] not in classes)
        if skipped:
            print_log(f'{split}: {skipped} annotations in {ann_file} are of categories outside '
                      f'the config\'s {len(classes)} classes and are not used.',
                      logger='current')
        _log_dropped_boxes(split, ann_file, coco, classes, categories)
        check_head_classes(cfg, f'{split}.dataset', classes)


@register_layout
class CocoInstances(DatasetLayout):
    name = 'coco'

    def matches(self, dataset_class, dataset_cfg):
        return is_subclass_of(dataset_class, 'mmdet.datasets', 'CocoDataset')

    def training_classes(self, split, dataset_cfg, dataset_class):
        classes = config_classes(dataset_cfg, dataset_class)
        return SplitClasses(split, classes, 'metainfo.classes', COCO_FIX) if classes else None

    def check(self, cfg, split, dataset_cfg, dataset_class, agreement):
        check_coco(cfg, split, dataset_cfg, dataset_class, agreement)
        return None  # the classes are the config's: nothing for the load checks
