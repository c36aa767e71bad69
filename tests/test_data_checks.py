"""Bad data is named before a run (or, for what is only read during it, when it is read)."""
import json

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import vmamba_mm  # noqa: F401
from vmamba_mm.data_checks import (DataError, ValidateSegLabels, add_seg_label_checks,
                                   check_datasets, describe_data_error)
from vmamba_mm.engine import (ConfigError, describe_sync_batchnorm_change, load_config,
                              replace_sync_batchnorm)

CLASSES = ('circle', 'square')


def write_coco(root, split='train', images=2, categories=CLASSES, annotation_category=1):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(exist_ok=True)
    coco = dict(images=[], annotations=[], categories=[
        dict(id=i + 1, name=name) for i, name in enumerate(categories)])
    for index in range(images):
        name = f'{index:03d}.png'
        Image.new('RGB', (32, 32)).save(root / split / name)
        coco['images'].append(dict(id=index, file_name=name, width=32, height=32))
        coco['annotations'].append(dict(id=index, image_id=index, category_id=annotation_category,
                                        bbox=[4, 4, 8, 8], area=64, iscrowd=0))
    path = root / 'annotations' / f'instances_{split}.json'
    path.write_text(json.dumps(coco))
    return coco, path


def detection_cfg(root, classes=CLASSES, num_classes=2):
    dataset = dict(type='CocoDataset', data_root=str(root),
                   ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                   metainfo=dict(classes=classes), pipeline=[])
    return Config(dict(
        default_scope='mmdet',
        model=dict(type='MaskRCNN', roi_head=dict(
            bbox_head=dict(type='Shared2FCBBoxHead', num_classes=num_classes),
            mask_head=dict(type='FCNMaskHead', num_classes=num_classes))),
        train_dataloader=dict(dataset=dataset)))


def test_good_coco_set_passes(tmp_path):
    write_coco(tmp_path)
    check_datasets(detection_cfg(tmp_path))


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(DataError, match='annotation file not found: .*instances_train.json'):
        check_datasets(detection_cfg(tmp_path))


def test_malformed_annotation_file_is_named(tmp_path):
    _, path = write_coco(tmp_path)
    path.write_text('{"images": [')
    with pytest.raises(DataError, match=f'not valid JSON: {path}'):
        check_datasets(detection_cfg(tmp_path))
    path.write_text(json.dumps(dict(images=[])))
    with pytest.raises(DataError, match=r"not a COCO instance file: it has no \['annotations', "
                       r"'categories'\]"):
        check_datasets(detection_cfg(tmp_path))


def test_annotation_of_a_missing_image_is_named(tmp_path):
    coco, path = write_coco(tmp_path, images=3)
    (tmp_path / 'train' / '001.png').unlink()
    with pytest.raises(DataError, match=r"1 of the 3 images .* not on disk, e.g. \[.*001.png'\]"):
        check_datasets(detection_cfg(tmp_path))
    coco['annotations'].append(dict(id=9, image_id=42, category_id=1, bbox=[0, 0, 4, 4],
                                    area=16, iscrowd=0))
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r'annotations for image ids that are not in its images '
                       r'list: \[42\]'):
        check_datasets(detection_cfg(tmp_path))


def test_category_mismatches_are_named(tmp_path):
    write_coco(tmp_path, categories=('ball', 'box'))
    with pytest.raises(DataError, match=r"classes \['circle', 'square'\] are not categories"):
        check_datasets(detection_cfg(tmp_path))
    write_coco(tmp_path, annotation_category=7)
    with pytest.raises(DataError, match=r'category ids \[7\] that are not in its categories'):
        check_datasets(detection_cfg(tmp_path))
    write_coco(tmp_path)
    with pytest.raises(DataError, match=r'model.roi_head.bbox_head.num_classes is 80 but '
                       r'train_dataloader.dataset has 2 classes'):
        check_datasets(detection_cfg(tmp_path, num_classes=80))


def write_ade(root, split='training', labels=(0, 1, 2), count=2):
    for sub in ('images', 'annotations'):
        (root / sub / split).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new('RGB', (16, 16)).save(root / 'images' / split / f'{index}.jpg')
        label = np.resize(np.array(labels, dtype=np.uint8), (16, 16))
        Image.fromarray(label).save(root / 'annotations' / split / f'{index}.png')


def segmentation_cfg(root, num_classes=2):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    dataset = dict(type='BaseSegDataset', data_root=str(root), reduce_zero_label=True,
                   data_prefix=dict(img_path='images/training',
                                    seg_map_path='annotations/training'),
                   metainfo=dict(classes=CLASSES, palette=[[0, 0, 0], [255, 0, 0]]),
                   pipeline=pipeline)
    return Config(dict(
        default_scope='mmseg',
        model=dict(type='EncoderDecoder', decode_head=dict(type='UPerHead',
                                                           num_classes=num_classes)),
        train_dataloader=dict(dataset=dataset)))


def test_segmentation_layout_problems_are_named(tmp_path):
    with pytest.raises(DataError, match='image folder not found: .*images/training'):
        check_datasets(segmentation_cfg(tmp_path))
    write_ade(tmp_path)
    (tmp_path / 'annotations' / 'training' / '1.png').unlink()
    with pytest.raises(DataError, match=r'1 of 2 images have no label map .*1.jpg'):
        check_datasets(segmentation_cfg(tmp_path))
    write_ade(tmp_path)
    with pytest.raises(DataError, match='model.decode_head.num_classes is 150 but'):
        check_datasets(segmentation_cfg(tmp_path, num_classes=150))


def test_label_check_is_added_after_load_annotations_and_catches_out_of_range(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    write_ade(tmp_path, labels=(0, 1, 2, 5))  # 5 -> 4 after reduce_zero_label: beyond 2 classes
    cfg = segmentation_cfg(tmp_path)
    check_datasets(cfg)
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'LoadAnnotations',
                                             'ValidateSegLabels', 'PackSegInputs']
    assert pipeline[2]['num_classes'] == 2
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    with pytest.raises(DataError, match=r'label map .*0.png has labels \[4\] outside the 2 '
                       r'classes 0..1 and ignore 255 \(after reduce_zero_label'):
        dataset[0]
    write_ade(tmp_path, labels=(0, 1, 2))
    assert DATASETS.build(cfg.train_dataloader.dataset)[0]['data_samples'] is not None


def test_label_check_keeps_the_number_of_test_time_views():
    tta = [dict(type='LoadImageFromFile'),
           dict(type='TestTimeAug', transforms=[
               [dict(type='Resize', scale_factor=r) for r in (0.5, 1.0)],
               [dict(type='RandomFlip', prob=p) for p in (0., 1.)],
               [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])]
    assert add_seg_label_checks(tta, 150)
    stages = tta[1]['transforms']
    assert [len(s) for s in stages] == [2, 2, 1, 1, 1]
    assert stages[3] == [dict(type='ValidateSegLabels', num_classes=150, ignore_index=255)]
    assert not add_seg_label_checks(tta, 150)  # once only


def test_validate_seg_labels_accepts_ignore_and_in_range():
    check = ValidateSegLabels(num_classes=3)
    labels = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    assert check(dict(gt_seg_map=labels))['gt_seg_map'] is labels


def test_errors_from_dataloader_workers_become_one_line():
    import torch
    from torch.utils.data import DataLoader

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            raise DataError('label map /data/x.png has labels [7] outside the 2 classes')

    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert 'Traceback' in str(caught.value)
    assert describe_data_error(caught.value) == \
        'label map /data/x.png has labels [7] outside the 2 classes'
    folded = AssertionError('Caught AssertionError in DataLoader worker process 0.\nOriginal '
                            'Traceback...\nAssertionError: failed to load image: /d/bad.png\n')
    assert describe_data_error(folded).startswith('image file does not decode: /d/bad.png;')
    assert describe_data_error(RuntimeError('CUDA out of memory')) is None


def test_sync_batchnorm_becomes_batchnorm_without_a_process_group():
    cfg = Config(dict(model=dict(decode_head=dict(norm_cfg=dict(type='SyncBN')),
                                 auxiliary_head=[dict(norm_cfg=dict(type='SyncBN'))],
                                 backbone=dict(norm_cfg=dict(type='LN')))))
    changed = replace_sync_batchnorm(cfg, 'none')
    assert changed == ['model.decode_head.norm_cfg', 'model.auxiliary_head.0.norm_cfg']
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.backbone.norm_cfg.type == 'LN'
    assert 'single-process run has no process group' in describe_sync_batchnorm_change(
        changed, 'none')


def test_top_level_cfg_option_typos_are_named(tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text("default_scope = 'mmpretrain'\ntrain_cfg = dict(max_epochs=1)\n")
    with pytest.raises(ConfigError, match="no top-level 'laod_from'"):
        load_config(str(config), {'laod_from': 'x.pth'})
    assert load_config(str(config), {'load_from': 'x.pth'}).load_from == 'x.pth'
    with pytest.raises(ConfigError, match="no 'train_cgf' under the top level"):
        load_config(str(config), {'train_cgf.max_epochs': 2})
