"""Checks on a config's data before a run, so that bad data is named instead of found hours in.

``check_datasets`` runs in tools/train.py and tools/test.py before the Runner is built. Each
dataset layout it knows is a file in ``layouts/`` (a new one is a new file there); today the four
the framework's configs read:

- folder classification (mmpretrain ``CustomDataset`` without ``ann_file``): missing folders,
  empty class folders, empty (0-byte) images, a head whose ``num_classes`` differs from the
  folder count;
- annotation-list classification (``CustomDataset``/``ImageNet`` with an ``ann_file`` such as
  ``meta/val.txt``): a missing list or image folder, lines that are not ``<path> <label>``,
  labels outside the head's classes, listed images that are missing or empty;
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
from .class_agreement import ClassAgreement
from .dataset_config import dataset_class, leaf_datasets
from .heads import check_loss_class_weights
from .layouts import layout_of
from .transforms import add_empty_file_checks

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def training_classes(cfg):
    """The training split's classes where they can be read without checking its data, or None.

    A test-only run compares its test split with them: the head was trained on them. Each layout
    says where its classes are read (class folders only where they are on disk; COCO and
    segmentation classes from the config). The first leaf dataset of the split decides.
    """
    scope = cfg.get('default_scope')
    split = 'train_dataloader'
    for dataset_cfg in leaf_datasets((cfg.get(split) or {}).get('dataset')):
        cls = dataset_class(dataset_cfg, scope)
        layout = layout_of(cls, dataset_cfg)
        return None if layout is None else layout.training_classes(split, dataset_cfg, cls)
    return None


def _pipelines(cfg, split, dataset_cfg):
    """The pipelines a dataset's files go through: its own, and for the test split the config's
    tta_pipeline (tools/test.py --tta puts it in place of the dataset's)."""
    pipelines = [dataset_cfg.get('pipeline')]
    if split == 'test_dataloader' and isinstance(cfg.get('tta_pipeline'), list):
        pipelines.append(cfg.tta_pipeline)
    return pipelines


def check_datasets(cfg, splits=DATALOADERS):
    """Check every dataset the given dataloaders read; raise DataError naming the first problem.

    Without the training split among ``splits`` (a test-only run), the classes of the splits
    checked are compared with the training split's, where those can be read. The dataset
    pipelines get the checks that run as each file loads.
    """
    scope = cfg.get('default_scope')
    agreement = ClassAgreement(None if 'train_dataloader' in splits else training_classes(cfg))
    for split in splits:
        loader = cfg.get(split)
        if not loader:
            continue
        for dataset_cfg in leaf_datasets(loader.get('dataset')):
            cls = dataset_class(dataset_cfg, scope)
            layout = layout_of(cls, dataset_cfg)
            if layout is None:
                continue  # a layout no file in layouts/ knows: not checked
            classes = layout.check(cfg, split, dataset_cfg, cls, agreement)
            pipelines = _pipelines(cfg, split, dataset_cfg)
            layout.add_load_checks(pipelines, classes)
            for pipeline in pipelines:
                add_empty_file_checks(pipeline)
    if 'train_dataloader' in splits:
        check_loss_class_weights(cfg)
