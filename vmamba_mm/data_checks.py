"""Checks on a config's data before a run, so that bad data is named instead of found hours in.

``check_datasets`` runs in tools/train.py and tools/test.py before the Runner is built. It knows
the three layouts the framework's configs read:

- folder classification (mmpretrain ``CustomDataset`` without ``ann_file``): missing folders,
  empty class folders, a head whose ``num_classes`` differs from the folder count;
- COCO instances (mmdet ``CocoDataset`` and subclasses): a missing or malformed annotation file,
  annotations or images the file references but that do not exist, config classes that are not
  categories of the file, heads whose ``num_classes`` differs from the classes;
- semantic segmentation (mmseg ``BaseSegDataset`` and subclasses such as ``ADE20KDataset``):
  missing folders, images without a label map, heads whose ``num_classes`` differs. Label values
  can only be checked by reading every map, so ``ValidateSegLabels`` does it as each one loads.

Problems in data that is only read during the run (an image that does not decode, a label map
with values beyond the classes) raise ``DataError``; ``describe_data_error`` turns that, even
re-raised from a DataLoader worker with its traceback folded in, into the one line the tools
print.
"""
import json
import os
import os.path as osp

import numpy as np

from mmengine.logging import print_log

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class DataError(ValueError):
    """Bad data, said in words a user can act on (names the file)."""


def describe_data_error(exc):
    """The one-line message for a data problem raised during a run, or None for anything else.

    A DataLoader worker re-raises the worker's exception type with the worker's whole traceback as
    the message; the original message is its last line.
    """
    text = str(exc).strip()
    if isinstance(exc, DataError):
        line = text.splitlines()[-1]
        return line.split('DataError: ', 1)[-1]
    if isinstance(exc, AssertionError) and 'failed to load image:' in text:
        # mmcv's LoadImageFromFile asserts on bytes that do not decode; it names the file.
        path = text.rsplit('failed to load image:', 1)[1].strip().splitlines()[0]
        return (f'image file does not decode: {path}; replace or remove it (and its annotation, '
                f'if any).')
    return None


def _datasets(dataset_cfg):
    """The leaf datasets of a dataset config, through RepeatDataset/ConcatDataset-style wrappers."""
    if not isinstance(dataset_cfg, dict):
        return
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        for inner in dataset_cfg['datasets']:
            yield from _datasets(inner)
    elif isinstance(dataset_cfg.get('dataset'), dict):
        yield from _datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def _dataset_class(dataset_cfg, scope):
    """The registered class a dataset config builds, or None if the registry does not know it."""
    import importlib
    type_ = dataset_cfg.get('type')
    if not isinstance(type_, str):
        return type_ if isinstance(type_, type) else None
    if '.' in type_:
        scope, type_ = type_.split('.', 1)
    try:
        registry = importlib.import_module(f'{scope}.registry').DATASETS
    except (ImportError, TypeError):
        return None
    return registry.get(type_)


def _subclass_of(cls, module, name):
    if cls is None:
        return False
    try:
        base = getattr(__import__(module, fromlist=[name]), name)
    except ImportError:
        return False
    return issubclass(cls, base)


def _under_root(dataset_cfg, path):
    root = dataset_cfg.get('data_root') or ''
    return path if not path or osp.isabs(path) else osp.join(root, path)


def _classes(dataset_cfg, cls):
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return tuple(metainfo['classes'])
    return tuple((getattr(cls, 'METAINFO', None) or {}).get('classes') or ()) or None


def _head_class_counts(model_cfg):
    """(config key, num_classes) for every head of the model that declares one."""
    found = []

    def walk(node, key):
        if isinstance(node, dict):
            if 'num_classes' in node and key.split('.')[-1] not in ('data_preprocessor', 'model'):
                found.append((f'{key}.num_classes', node['num_classes']))
            for name, value in node.items():
                if name not in ('train_cfg', 'test_cfg', 'data_preprocessor'):
                    walk(value, f'{key}.{name}')
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f'{key}.{index}')

    walk(model_cfg, 'model')
    return found


def _check_head_classes(cfg, where, classes, ignored_heads=()):
    for key, count in _head_class_counts(cfg.get('model') or {}):
        if key in ignored_heads or not isinstance(count, int):
            continue
        if count != len(classes):
            raise DataError(f'{key} is {count} but {where} has {len(classes)} classes '
                            f'{list(classes)[:10]}{" ..." if len(classes) > 10 else ""}; set '
                            f'--cfg-options {key}={len(classes)} (or change the classes).')


def check_folder_classification(cfg, split, dataset_cfg):
    prefix = dataset_cfg.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    folder = osp.join(dataset_cfg.get('data_root', '') or '', prefix)
    if not osp.isdir(folder):
        raise DataError(f'{split}.dataset: image folder not found: {folder} (data_root '
                        f'{dataset_cfg.get("data_root")!r}, data_prefix {prefix!r}).')
    classes = sorted(d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))
    if not classes:
        raise DataError(f'{split}.dataset: no class folders in {folder}; the layout is '
                        f'{folder}/<class>/<image>.')
    empty = [osp.join(folder, c) for c in classes
             if not any(f.lower().endswith(IMAGE_EXTENSIONS)
                        for f in os.listdir(osp.join(folder, c)))]
    if empty:
        raise DataError(f'{split}.dataset: class folder(s) with no images: {empty}.')
    head = (cfg.get('model') or {}).get('head') or {}
    num_classes = head.get('num_classes') if isinstance(head, dict) else None
    if num_classes is not None and num_classes != len(classes):
        raise DataError(f'model.head.num_classes is {num_classes} but {folder} has '
                        f'{len(classes)} class folders {classes}; set --cfg-options '
                        f'model.head.num_classes={len(classes)}.')


def check_coco(cfg, split, dataset_cfg, cls):
    ann_file = _under_root(dataset_cfg, dataset_cfg.get('ann_file') or '')
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
        raise DataError(f'{split}.dataset: annotation file is not valid JSON: {ann_file} ({exc}).')
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
                        f'id, image_id and category_id).')
    orphans = sorted({image_id for _, image_id, _ in referenced if image_id not in images})
    if orphans:
        raise DataError(f'{split}.dataset: {ann_file} has annotations for image ids that are not '
                        f'in its images list: {orphans[:10]}.')
    unknown = sorted({cat for _, _, cat in referenced if cat not in categories})
    if unknown:
        raise DataError(f'{split}.dataset: {ann_file} has annotations with category ids '
                        f'{unknown[:10]} that are not in its categories list.')

    prefix = dataset_cfg.get('data_prefix') or {}
    image_dir = _under_root(dataset_cfg, prefix.get('img', '') if isinstance(prefix, dict)
                            else prefix)
    absent = [osp.join(image_dir, name) for name in images.values()
              if not osp.isfile(osp.join(image_dir, name))]
    if absent:
        raise DataError(f'{split}.dataset: {len(absent)} of the {len(images)} images {ann_file} '
                        f'lists are not on disk, e.g. {absent[:3]}; check data_root and '
                        f'data_prefix.img.')

    classes = _classes(dataset_cfg, cls)
    if classes:
        names = set(categories.values())
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
        _check_head_classes(cfg, f'{split}.dataset', classes)


def check_segmentation(cfg, split, dataset_cfg, cls):
    prefix = dataset_cfg.get('data_prefix') or {}
    image_dir = _under_root(dataset_cfg, prefix.get('img_path', ''))
    label_dir = prefix.get('seg_map_path')
    label_dir = _under_root(dataset_cfg, label_dir) if label_dir is not None else None
    defaults = {}
    if cls is not None:
        import inspect
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    img_suffix = dataset_cfg.get('img_suffix', defaults.get('img_suffix', '.jpg'))
    seg_suffix = dataset_cfg.get('seg_map_suffix', defaults.get('seg_map_suffix', '.png'))
    for kind, folder in (('image', image_dir), ('label map', label_dir)):
        if folder is not None and not osp.isdir(folder):
            raise DataError(f'{split}.dataset: {kind} folder not found: {folder} (data_root '
                            f'{dataset_cfg.get("data_root")!r}, data_prefix {dict(prefix)}).')
    ann_file = dataset_cfg.get('ann_file')
    if ann_file:
        ann_file = _under_root(dataset_cfg, ann_file)
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
    if label_dir is not None:
        unlabelled = [osp.join(image_dir, s + img_suffix) for s in stems
                      if not osp.isfile(osp.join(label_dir, s + seg_suffix))]
        if unlabelled:
            raise DataError(f'{split}.dataset: {len(unlabelled)} of {len(stems)} images have no '
                            f'label map ({label_dir}/<name>{seg_suffix}), e.g. {unlabelled[:3]}.')
    classes = _classes(dataset_cfg, cls)
    if classes:
        _check_head_classes(cfg, f'{split}.dataset', classes)
    return classes


def _is_load_annotations(transform):
    return isinstance(transform, dict) and str(transform.get('type', '')).endswith(
        'LoadAnnotations')


def add_seg_label_checks(pipeline, num_classes, ignore_index=255):
    """Insert ValidateSegLabels after the pipeline's LoadAnnotations, once.

    In a TestTimeAug the check becomes a stage of its own after the stage that loads the labels,
    so the number of augmented views stays the same.
    """
    check = dict(type='ValidateSegLabels', num_classes=num_classes, ignore_index=ignore_index)
    if not isinstance(pipeline, list) or 'ValidateSegLabels' in str(pipeline):
        return False
    for index, transform in enumerate(pipeline):
        if _is_load_annotations(transform):
            pipeline.insert(index + 1, check)
            return True
        if isinstance(transform, dict) and transform.get('type') == 'TestTimeAug':
            stages = transform.get('transforms', [])
            for stage_index, stage in enumerate(stages):
                if any(_is_load_annotations(t) for t in stage):
                    stages.insert(stage_index + 1, [check])
                    return True
    return False


def check_datasets(cfg, splits=DATALOADERS):
    """Check every dataset the given dataloaders read; raise DataError naming the first problem."""
    scope = cfg.get('default_scope')
    for split in splits:
        loader = cfg.get(split)
        if not loader:
            continue
        for dataset_cfg in _datasets(loader.get('dataset')):
            cls = _dataset_class(dataset_cfg, scope)
            if _subclass_of(cls, 'mmdet.datasets', 'CocoDataset'):
                check_coco(cfg, split, dataset_cfg, cls)
            elif _subclass_of(cls, 'mmseg.datasets', 'BaseSegDataset'):
                classes = check_segmentation(cfg, split, dataset_cfg, cls)
                if classes:
                    add_seg_label_checks(dataset_cfg.get('pipeline'), len(classes))
                    if split == 'test_dataloader' and isinstance(cfg.get('tta_pipeline'), list):
                        add_seg_label_checks(cfg.tta_pipeline, len(classes))
            elif (_subclass_of(cls, 'mmpretrain.datasets', 'CustomDataset')
                  and not dataset_cfg.get('ann_file')):
                check_folder_classification(cfg, split, dataset_cfg)


class ValidateSegLabels:
    """Fail on a label map with values outside ``0 .. num_classes-1`` and ``ignore_index``.

    Out-of-range labels otherwise crash the loss with an index error far from the file (a
    device-side assert on a GPU), or are silently dropped by the IoU metric.
    """

    def __init__(self, num_classes, ignore_index=255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, results):
        labels = results.get('gt_seg_map')
        if labels is None:
            return results
        values = np.unique(labels)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size or (values < 0).any():
            bad = np.concatenate([values[values < 0], bad])
            path = results.get('seg_map_path', '<label map>')
            shift = (' (after reduce_zero_label, which maps file value v to v-1 and 0 to '
                     f'{self.ignore_index})' if results.get('reduce_zero_label') else '')
            raise DataError(f'label map {path} has labels {bad.tolist()[:10]} outside the '
                            f'{self.num_classes} classes 0..{self.num_classes - 1} and ignore '
                            f'{self.ignore_index}{shift}; fix the file or the classes.')
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
