"""Checks on a config's data before a run, so that bad data is named instead of found hours in.

``check_datasets`` runs in tools/train.py and tools/test.py before the Runner is built. It knows
the three layouts the framework's configs read:

- folder classification (mmpretrain ``CustomDataset`` without ``ann_file``): missing folders,
  empty class folders, empty (0-byte) images, a head whose ``num_classes`` differs from the
  folder count;
- COCO instances (mmdet ``CocoDataset`` and subclasses): a missing or malformed annotation file,
  annotations or images the file references but that do not exist or are empty, config classes
  that are not categories of the file, heads whose ``num_classes`` differs from the classes; boxes
  that mmdet drops (no area, or outside the image) are counted in the log;
- semantic segmentation (mmseg ``BaseSegDataset`` and subclasses such as ``ADE20KDataset``):
  missing folders, images without a label map, empty images or label maps, heads whose
  ``num_classes`` differs. Label values and channels can only be checked by reading every map,
  so ``ValidateSegLabels`` does it as each one loads.

Every split must have the training split's classes in the same label order (class folders, the
config classes found in each annotation file, ``metainfo.classes``): otherwise a model scores one
split with the labels of another. A test-only run compares with the training split's classes
where they can be read. Loss ``class_weight`` lists must have one entry per class of their head.

Problems in data that is only read during the run (an image that does not decode or was emptied,
a label map with values beyond the classes) raise ``DataError``; ``describe_data_error`` turns
that, even re-raised from a DataLoader worker with its traceback folded in, into the one line the
tools print.
"""
import importlib
import importlib.util
import json
import os
import os.path as osp
from typing import NamedTuple, Optional

from mmengine.logging import print_log

# DataError, describe_data_error and ValidateSegLabels are imported from here by the tools.
from .data_errors import DataError, describe_data_error  # noqa: F401
from .data_transforms import (ValidateSegLabels, add_empty_file_checks,  # noqa: F401
                              add_seg_label_checks)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


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
    if cls is None or importlib.util.find_spec(module.split('.')[0]) is None:
        return False  # that task package is not installed, so cls cannot be one of its classes
    return issubclass(cls, getattr(importlib.import_module(module), name))


def _under_root(dataset_cfg, path):
    root = dataset_cfg.get('data_root') or ''
    return path if not path or osp.isabs(path) else osp.join(root, path)


def _classes(dataset_cfg, cls):
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return tuple(metainfo['classes'])
    return tuple((getattr(cls, 'METAINFO', None) or {}).get('classes') or ()) or None


def _heads(model_cfg):
    """(config key, config) of every part of the model that declares ``num_classes``."""
    found = []

    def walk(node, key):
        if isinstance(node, dict):
            if 'num_classes' in node and key.split('.')[-1] not in ('data_preprocessor', 'model'):
                found.append((key, node))
            for name, value in node.items():
                if name not in ('train_cfg', 'test_cfg', 'data_preprocessor'):
                    walk(value, f'{key}.{name}')
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f'{key}.{index}')

    walk(model_cfg, 'model')
    return found


def _head_class_counts(model_cfg):
    """(config key, num_classes) for every head of the model that declares one."""
    return [(f'{key}.num_classes', head['num_classes']) for key, head in _heads(model_cfg)]


def _check_head_classes(cfg, where, classes, ignored_heads=()):
    for key, count in _head_class_counts(cfg.get('model') or {}):
        if key in ignored_heads or not isinstance(count, int):
            continue
        if count != len(classes):
            raise DataError(f'{key} is {count} but {where} has {len(classes)} classes '
                            f'{list(classes)[:10]}{" ..." if len(classes) > 10 else ""}; set '
                            f'--cfg-options {key}={len(classes)} (or change the classes).')


# ------------------------------------------------------------------ classes across the splits


class SplitClasses(NamedTuple):
    """The classes one split labels, in label order, where they were read, and how to align them."""
    split: str
    names: tuple
    source: str
    fix: str


FOLDER_FIX = 'rename the class folders so that every split has the same ones'
COCO_FIX = ("give every split's annotation file a category of each of the config's classes "
            '(names are matched, ids may differ)')
SEGMENTATION_FIX = 'give every split the same metainfo.classes, in the same order'


class ClassAgreement:
    """Holds the first split's classes (or the training split's) and compares every other split.

    Labels are class indices: a split whose classes differ, even only in order, is scored with
    the labels of another (a model trained on one folder set tested on another is permuted).
    """

    def __init__(self, reference: Optional[SplitClasses] = None):
        self.reference = reference

    def check(self, current: SplitClasses):
        reference = self.reference
        if reference is None:
            self.reference = current
            return
        if current.names == reference.names:
            return
        only_here = [n for n in current.names if n not in reference.names]
        only_there = [n for n in reference.names if n not in current.names]
        if only_here or only_there:
            detail = '; '.join(f'only in {split}: {names[:10]}' for split, names in (
                (current.split, only_here), (reference.split, only_there)) if names)
        else:
            detail = (f'the same classes in another order: {list(current.names)[:10]} against '
                      f'{list(reference.names)[:10]}')
        raise DataError(f'{current.split}.dataset ({current.source}) does not have the classes '
                        f'of {reference.split}.dataset ({reference.source}): {detail}. Labels '
                        f'are numbered by class, so the splits would disagree on what each '
                        f'label means; {current.fix}.')


def _folder_of(dataset_cfg):
    prefix = dataset_cfg.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    return osp.join(dataset_cfg.get('data_root', '') or '', prefix), prefix


def _class_folders(folder):
    """Class folders in label order: mmpretrain numbers them in sorted order."""
    return sorted(d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))


def _layout(cls, dataset_cfg):
    if _subclass_of(cls, 'mmdet.datasets', 'CocoDataset'):
        return 'coco'
    if _subclass_of(cls, 'mmseg.datasets', 'BaseSegDataset'):
        return 'segmentation'
    if _subclass_of(cls, 'mmpretrain.datasets', 'CustomDataset') and not dataset_cfg.get(
            'ann_file'):
        return 'folder'
    return None


def training_classes(cfg):
    """The training split's classes where they can be read without checking its data, or None.

    A test-only run compares its test split with them: the head was trained on them. Class
    folders count only where they are on disk; COCO and segmentation classes come from the
    config.
    """
    scope = cfg.get('default_scope')
    split = 'train_dataloader'
    for dataset_cfg in _datasets((cfg.get(split) or {}).get('dataset')):
        cls = _dataset_class(dataset_cfg, scope)
        layout = _layout(cls, dataset_cfg)
        if layout == 'folder':
            folder, _ = _folder_of(dataset_cfg)
            if osp.isdir(folder) and _class_folders(folder):
                return SplitClasses(split, tuple(_class_folders(folder)), folder, FOLDER_FIX)
        elif layout in ('coco', 'segmentation'):
            classes = _classes(dataset_cfg, cls)
            if classes:
                return SplitClasses(split, classes, 'metainfo.classes',
                                    COCO_FIX if layout == 'coco' else SEGMENTATION_FIX)
        return None
    return None


# ------------------------------------------------------------------------------ the layouts


def _empty_files(paths):
    return [path for path in paths if osp.getsize(path) == 0]


def _refuse_empty_files(split, kind, empty, total):
    if empty:
        raise DataError(f'{split}.dataset: {len(empty)} of the {total} {kind} files are empty '
                        f'(0 bytes), e.g. {empty[:3]}; replace them, or remove them and their '
                        f'annotations.')


def _images_under(folder):
    """The image files under folder and its subfolders, as mmpretrain collects a class."""
    return [osp.join(dirpath, name) for dirpath, _, names in os.walk(folder, followlinks=True)
            for name in names if name.lower().endswith(IMAGE_EXTENSIONS)]


def check_folder_classification(cfg, split, dataset_cfg, agreement=None):
    folder, prefix = _folder_of(dataset_cfg)
    if not osp.isdir(folder):
        raise DataError(f'{split}.dataset: image folder not found: {folder} (data_root '
                        f'{dataset_cfg.get("data_root")!r}, data_prefix {prefix!r}).')
    classes = _class_folders(folder)
    if not classes:
        raise DataError(f'{split}.dataset: no class folders in {folder}; the layout is '
                        f'{folder}/<class>/<image>.')
    (agreement or ClassAgreement()).check(SplitClasses(split, tuple(classes), folder, FOLDER_FIX))
    images = {c: _images_under(osp.join(folder, c)) for c in classes}
    empty = [osp.join(folder, c) for c in classes if not images[c]]
    if empty:
        raise DataError(f'{split}.dataset: class folder(s) with no images: {empty}.')
    every_image = [path for paths in images.values() for path in paths]
    _refuse_empty_files(split, 'image', _empty_files(every_image), len(every_image))
    head = (cfg.get('model') or {}).get('head') or {}
    num_classes = head.get('num_classes') if isinstance(head, dict) else None
    if num_classes is not None and num_classes != len(classes):
        raise DataError(f'model.head.num_classes is {num_classes} but {folder} has '
                        f'{len(classes)} class folders {classes}; set --cfg-options '
                        f'model.head.num_classes={len(classes)}.')


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


def check_coco(cfg, split, dataset_cfg, cls, agreement=None):
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
    image_dir = _under_root(dataset_cfg, prefix.get('img', '') if isinstance(prefix, dict)
                            else prefix)
    paths = [osp.join(image_dir, name) for name in images.values()]
    absent = [path for path in paths if not osp.isfile(path)]
    if absent:
        raise DataError(f'{split}.dataset: {len(absent)} of the {len(images)} images {ann_file} '
                        f'lists are not on disk, e.g. {absent[:3]}; check data_root and '
                        f'data_prefix.img.')
    _refuse_empty_files(split, 'image', _empty_files(paths), len(paths))

    classes = _classes(dataset_cfg, cls)
    if classes:
        names = set(categories.values())
        (agreement or ClassAgreement()).check(SplitClasses(
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
        _check_head_classes(cfg, f'{split}.dataset', classes)


def check_segmentation(cfg, split, dataset_cfg, cls, agreement=None):
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
    classes = _classes(dataset_cfg, cls)
    if classes:
        (agreement or ClassAgreement()).check(SplitClasses(
            split, classes, 'metainfo.classes', SEGMENTATION_FIX))
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
    image_paths = [osp.join(image_dir, s + img_suffix) for s in stems]
    absent_images = [path for path in image_paths if not osp.isfile(path)]
    if absent_images:
        raise DataError(f'{split}.dataset: {len(absent_images)} of the {len(stems)} images '
                        f'{ann_file} lists are not on disk, e.g. {absent_images[:3]}.')
    _refuse_empty_files(split, 'image', _empty_files(image_paths), len(image_paths))
    if label_dir is not None:
        label_paths = [osp.join(label_dir, s + seg_suffix) for s in stems]
        unlabelled = [image for image, label in zip(image_paths, label_paths)
                      if not osp.isfile(label)]
        if unlabelled:
            raise DataError(f'{split}.dataset: {len(unlabelled)} of {len(stems)} images have no '
                            f'label map ({label_dir}/<name>{seg_suffix}), e.g. {unlabelled[:3]}.')
        _refuse_empty_files(split, 'label map', _empty_files(label_paths), len(label_paths))
    if classes:
        _check_head_classes(cfg, f'{split}.dataset', classes)
    return classes


# ------------------------------------------------------------------------- loss class weights


def _losses_with_class_weight(head, key):
    """(config key, loss config) for the losses of head that set a class_weight list.

    Losses of a nested head that declares its own num_classes belong to that head.
    """
    found = []

    def walk(node, node_key, top):
        if isinstance(node, dict):
            if not top and 'num_classes' in node:
                return
            if isinstance(node.get('class_weight'), (list, tuple)):
                found.append((node_key, node))
            for name, value in node.items():
                if name not in ('train_cfg', 'test_cfg'):
                    walk(value, f'{node_key}.{name}', False)
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f'{node_key}.{index}', False)

    walk(head, key, True)
    return found


def _scores_per_pixel_or_box(head, loss, scope):
    """How many class scores the loss weighs, and why where that is not num_classes."""
    num_classes = head['num_classes']
    if scope == 'mmdet' and not (loss.get('use_sigmoid') or loss.get('use_mask')):
        return num_classes + 1, ' + 1 (a softmax head of mmdet also scores the background)'
    if scope == 'mmseg' and isinstance(head.get('out_channels'), int):
        return head['out_channels'], f' (out_channels {head["out_channels"]})'
    return num_classes, ''


def check_loss_class_weights(cfg):
    """A class_weight of another length than its head's classes stops the run, naming the key.

    Torch would fail inside the first loss with 'weight tensor should be defined either for all
    or no classes', naming neither the key nor the lengths.
    """
    scope = cfg.get('default_scope')
    for head_key, head in _heads(cfg.get('model') or {}):
        if not isinstance(head.get('num_classes'), int):
            continue
        for loss_key, loss in _losses_with_class_weight(head, head_key):
            expected, why = _scores_per_pixel_or_box(head, loss, scope)
            weights = loss['class_weight']
            if len(weights) != expected:
                raise DataError(
                    f'{loss_key}.class_weight has {len(weights)} entries but the loss weighs '
                    f'{expected} class scores: {head_key}.num_classes {head["num_classes"]}'
                    f'{why}; give one weight per class score, --cfg-options '
                    f'{loss_key}.class_weight="[w1,...,w{expected}]", or weigh them all alike '
                    f'with {loss_key}.class_weight=None.')


def check_datasets(cfg, splits=DATALOADERS):
    """Check every dataset the given dataloaders read; raise DataError naming the first problem.

    Without the training split among ``splits`` (a test-only run), the classes of the splits
    checked are compared with the training split's, where those can be read.
    """
    scope = cfg.get('default_scope')
    agreement = ClassAgreement(None if 'train_dataloader' in splits else training_classes(cfg))
    for split in splits:
        loader = cfg.get(split)
        if not loader:
            continue
        for dataset_cfg in _datasets(loader.get('dataset')):
            cls = _dataset_class(dataset_cfg, scope)
            layout = _layout(cls, dataset_cfg)
            if layout == 'coco':
                check_coco(cfg, split, dataset_cfg, cls, agreement)
            elif layout == 'segmentation':
                classes = check_segmentation(cfg, split, dataset_cfg, cls, agreement)
                if classes:
                    add_seg_label_checks(dataset_cfg.get('pipeline'), len(classes))
                    if split == 'test_dataloader' and isinstance(cfg.get('tta_pipeline'), list):
                        add_seg_label_checks(cfg.tta_pipeline, len(classes))
            elif layout == 'folder':
                check_folder_classification(cfg, split, dataset_cfg, agreement)
            if layout is not None:
                add_empty_file_checks(dataset_cfg.get('pipeline'))
                if split == 'test_dataloader' and isinstance(cfg.get('tta_pipeline'), list):
                    add_empty_file_checks(cfg.tta_pipeline)
    if 'train_dataloader' in splits:
        check_loss_class_weights(cfg)
