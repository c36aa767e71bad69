"""Bad data is named before a run (or, for what is only read during it, when it is read)."""
import json
import os
import shutil

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import vmamba_mm  # noqa: F401
from vmamba_mm.config import ConfigError
from vmamba_mm.datasets import (DataError, ValidateSegLabels, add_seg_label_checks, check_datasets,
                                check_loss_class_weights, describe_data_error)
from vmamba_mm.engine.runner import (describe_sync_batchnorm_change, load_config,
                                     replace_sync_batchnorm)

from tests.paths import (DEMO_CLASSIFICATION as DEMO_CLS, DEMO_SEGMENTATION as DEMO_SEG,
                         IMAGENET_TINY)
from tests.tool_runs import data_root_options, generate_demo_data, load_script, run_python

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


def coco_dataset(root, split='train', classes=CLASSES):
    return dict(type='CocoDataset', data_root=str(root),
                ann_file=f'annotations/instances_{split}.json', data_prefix=dict(img=f'{split}/'),
                metainfo=dict(classes=classes),
                pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])


def detection_cfg(root, classes=CLASSES, num_classes=2, splits=('train', )):
    return Config(dict(
        default_scope='mmdet',
        model=dict(type='MaskRCNN', roi_head=dict(
            bbox_head=dict(type='Shared2FCBBoxHead', num_classes=num_classes),
            mask_head=dict(type='FCNMaskHead', num_classes=num_classes))),
        **{f'{split}_dataloader': dict(dataset=coco_dataset(root, split, classes))
           for split in splits}))


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


def segmentation_dataset(root, split='training', classes=CLASSES):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    return dict(type='BaseSegDataset', data_root=str(root), reduce_zero_label=True,
                data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
                metainfo=dict(classes=classes, palette=[[0, 0, 0], [255, 0, 0]]),
                pipeline=pipeline)


def segmentation_cfg(root, num_classes=2):
    return Config(dict(
        default_scope='mmseg',
        model=dict(type='EncoderDecoder', decode_head=dict(type='UPerHead',
                                                           num_classes=num_classes)),
        train_dataloader=dict(dataset=segmentation_dataset(root))))


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
    assert [t['type'] for t in pipeline] == ['RefuseEmptyFiles', 'LoadImageFromFile',
                                             'LoadAnnotations', 'ValidateSegLabels',
                                             'PackSegInputs']
    assert pipeline[3]['num_classes'] == 2
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


def test_label_check_follows_a_transform_that_rewrites_the_labels():
    # SelectObject turns the dataset's classes into object / background: the model's 2 classes
    # hold after it, not after LoadAnnotations
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='RandomFlip', prob=0.5), dict(type='SelectObject'),
                dict(type='PackSegInputs')]
    assert add_seg_label_checks(pipeline, 2)
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip',
                                             'SelectObject', 'ValidateSegLabels', 'PackSegInputs']


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
    config.write_text("default_scope = 'mmpretrain'\n"
                      "train_cfg = dict(by_epoch=True, max_epochs=1)\n")
    with pytest.raises(ConfigError, match="no top-level 'laod_from'"):
        load_config(str(config), {'laod_from': 'x.pth'})
    assert load_config(str(config), {'load_from': 'x.pth'}).load_from == 'x.pth'
    with pytest.raises(ConfigError, match="no 'train_cgf' under the top level"):
        load_config(str(config), {'train_cgf.max_epochs': 2})


# ------------------------------------------------------------------- classes across the splits

def write_class_folders(root, split, classes, per_class=1):
    for name in classes:
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.new('RGB', (8, 8)).save(root / split / name / f'{index}.png')


def classification_cfg(root, num_classes=2):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    return Config(dict(
        default_scope='mmpretrain',
        model=dict(type='ImageClassifier', head=dict(type='LinearClsHead',
                                                     num_classes=num_classes)),
        **{f'{split}_dataloader': dict(dataset=dict(
            type='CustomDataset', data_root=str(root), data_prefix=folder, pipeline=pipeline))
           for split, folder in (('train', 'train'), ('val', 'val'), ('test', 'val'))}))


def test_class_folders_named_unlike_the_training_ones_are_named(tmp_path):
    write_class_folders(tmp_path, 'train', ('circle', 'square'))
    write_class_folders(tmp_path, 'val', ('circle', 'box'))
    with pytest.raises(DataError, match=r"val_dataloader.dataset \(.*val\) does not have the "
                       r"classes of train_dataloader.dataset \(.*train\): only in "
                       r"val_dataloader: \['box'\]; only in train_dataloader: \['square'\]"):
        check_datasets(classification_cfg(tmp_path), ('train_dataloader', 'val_dataloader'))
    # A test-only run compares with the training folders while they are on disk...
    with pytest.raises(DataError, match=r"only in test_dataloader: \['box'\]"):
        check_datasets(classification_cfg(tmp_path), ('test_dataloader', ))
    # ...and otherwise checks the test split alone.
    shutil.rmtree(tmp_path / 'train')
    check_datasets(classification_cfg(tmp_path), ('test_dataloader', ))


def test_coco_categories_that_differ_between_splits_are_named(tmp_path):
    write_coco(tmp_path, 'train')
    _, val_file = write_coco(tmp_path, 'val', categories=('circle', 'box'))
    with pytest.raises(DataError, match=rf"val_dataloader.dataset \({val_file}\) does not have "
                       r"the classes of train_dataloader.*only in train_dataloader: "
                       r"\['square'\]"):
        check_datasets(detection_cfg(tmp_path, splits=('train', 'val')))
    write_coco(tmp_path, 'val')
    check_datasets(detection_cfg(tmp_path, splits=('train', 'val')))


def test_segmentation_classes_that_differ_between_splits_are_named(tmp_path):
    write_ade(tmp_path, labels=(1, 2))
    write_ade(tmp_path, 'validation', labels=(1, 2))
    cfg = segmentation_cfg(tmp_path)
    cfg.val_dataloader = dict(dataset=segmentation_dataset(tmp_path, 'validation',
                                                           classes=CLASSES[::-1]))
    with pytest.raises(DataError, match=r"the same classes in another order: \['square', "
                       r"'circle'\] against \['circle', 'square'\].*same metainfo.classes"):
        check_datasets(cfg)
    # The test split against the training split's classes, from the config.
    cfg.test_dataloader = cfg.val_dataloader
    with pytest.raises(DataError, match=r'test_dataloader.dataset \(metainfo.classes\) does '
                       r'not have the classes of train_dataloader.dataset \(metainfo.classes\)'):
        check_datasets(cfg, ('test_dataloader', ))


def test_tools_stop_on_class_folders_unlike_the_training_ones(tmp_path):
    generate_demo_data('cls', tmp_path, '--size', '16', '--train-per-class', '1',
                       '--val-per-class', '1')
    os.rename(tmp_path / 'val' / 'stripes', tmp_path / 'val' / 'zigzag')
    data = data_root_options(tmp_path)
    expected = "only in val_dataloader: ['zigzag']; only in train_dataloader: ['stripes']"
    train = run_python('tools/train.py', DEMO_CLS, '--work-dir', str(tmp_path / 'work'),
                       '--cfg-options', *data)
    assert train.returncode == 2 and expected in train.stderr, train.stderr[-2000:]
    import torch
    checkpoint = tmp_path / 'any.pth'
    torch.save({'state_dict': {}}, checkpoint)  # the data is checked before it is loaded
    test = run_python('tools/test.py', DEMO_CLS, str(checkpoint), '--work-dir',
                      str(tmp_path / 'work'), '--cfg-options', *data)
    assert test.returncode == 2, test.stderr[-2000:]
    assert "only in test_dataloader: ['zigzag']; only in train_dataloader: ['stripes']" in \
        test.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------------ every file named


def test_empty_files_are_named_before_the_run(tmp_path):
    write_class_folders(tmp_path / 'cls', 'train', CLASSES, per_class=2)
    write_class_folders(tmp_path / 'cls', 'val', CLASSES)
    empty = tmp_path / 'cls' / 'train' / 'square' / '1.png'
    empty.write_bytes(b'')
    with pytest.raises(DataError, match=rf"1 of the 4 image files are empty \(0 bytes\), e.g. "
                       rf"\['{empty}'\]"):
        check_datasets(classification_cfg(tmp_path / 'cls'))

    write_coco(tmp_path / 'det', images=3)
    (tmp_path / 'det' / 'train' / '002.png').write_bytes(b'')
    with pytest.raises(DataError, match=r'1 of the 3 image files are empty .*002.png'):
        check_datasets(detection_cfg(tmp_path / 'det'))

    write_ade(tmp_path / 'seg')
    (tmp_path / 'seg' / 'annotations' / 'training' / '1.png').write_bytes(b'')
    with pytest.raises(DataError, match=r'1 of the 2 label map files are empty .*training/1.png'):
        check_datasets(segmentation_cfg(tmp_path / 'seg'))


def test_a_file_emptied_during_the_run_is_named_as_it_loads(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    write_ade(tmp_path, labels=(1, 2))
    cfg = segmentation_cfg(tmp_path)
    check_datasets(cfg)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    image = tmp_path / 'images' / 'training' / '0.jpg'
    image.write_bytes(b'')
    with pytest.raises(DataError, match=rf'image file is empty \(0 bytes\): {image}; replace'):
        dataset[0]
    # Where the check did not run, OpenCV's own complaint still becomes a line that says what
    # to do.
    folded = RuntimeError("Caught error in DataLoader worker process 0.\ncv2.error: OpenCV(5.0) "
                          "error: (-215:Assertion failed) !buf.empty() in function 'imdecode_'")
    assert describe_data_error(folded).startswith('an image or label map read during the run '
                                                  'is empty (0 bytes)')


def test_a_label_map_saved_in_colour_is_named(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    write_ade(tmp_path, labels=(1, 2))
    rgb = tmp_path / 'annotations' / 'training' / '0.png'
    Image.open(rgb).convert('RGB').save(rgb)
    cfg = segmentation_cfg(tmp_path)
    check_datasets(cfg)
    with pytest.raises(DataError, match=rf'label map {rgb} has 3 channels \(shape \(16, 16, 3\)\)'
                       r', not one class index per pixel: save it single-channel'):
        DATASETS.build(cfg.train_dataloader.dataset)[0]


def test_boxes_mmdet_drops_are_counted_once_per_annotation_file(tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    coco, path = write_coco(tmp_path, images=2)
    # (id, box) that mmdet drops: zero width, negative height, entirely outside the image, and
    # zero area; the last one is kept (a box partly outside the image is clipped, not dropped).
    boxes = [(10, [4, 4, 0, 8], 1), (11, [4, 4, 8, -3], 1), (12, [40, 40, 8, 8], 64),
             (13, [4, 4, 8, 8], 0), (14, [28, 28, 8, 8], 64)]
    for ann_id, box, area in boxes:
        coco['annotations'].append(dict(id=ann_id, image_id=1, category_id=1, bbox=box,
                                        area=area, iscrowd=0))
    path.write_text(json.dumps(coco))
    log_file = tmp_path / 'log.txt'
    MMLogger.get_instance('dropped_boxes_test', log_file=str(log_file))
    cfg = detection_cfg(tmp_path)
    check_datasets(cfg)
    lines = [line for line in log_file.read_text().splitlines() if 'mmdet drops' in line]
    assert len(lines) == 1, lines
    assert f'4 of the 7 annotations in {path} have a box that mmdet drops' in lines[0]
    assert 'annotation ids [10, 11, 12, 13]' in lines[0]
    # The same rule as mmdet's own reading of the file.
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, pipeline=[]))
    kept = sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))
    assert kept == 7 - 4


# ------------------------------------------------------------------------ loss class weights


def test_class_weight_of_another_length_names_the_config_key():
    from vmamba_mm.engine.runner import load_config
    cfg = load_config(DEMO_SEG, {'model.decode_head.num_classes': 5,
                                 'model.auxiliary_head.num_classes': 5})
    with pytest.raises(DataError, match=r'model.decode_head.loss_decode.class_weight has 4 '
                       r'entries but the loss weighs 5 class scores: '
                       r'model.decode_head.num_classes 5; .*class_weight=None'):
        check_loss_class_weights(cfg)
    cfg.merge_from_dict({'model.decode_head.loss_decode.class_weight': [1.0] * 5,
                         'model.auxiliary_head.loss_decode': [
                             dict(type='CrossEntropyLoss', class_weight=[1.0] * 5),
                             dict(type='DiceLoss', class_weight=[1.0] * 4)]})
    with pytest.raises(DataError, match=r'model.auxiliary_head.loss_decode.1.class_weight has 4'):
        check_loss_class_weights(cfg)
    cfg.model.auxiliary_head.loss_decode[1].class_weight = None
    check_loss_class_weights(cfg)

    # mmdet's softmax box classifier scores the background too; its sigmoid and mask losses not.
    det = Config(dict(default_scope='mmdet', model=dict(roi_head=dict(
        bbox_head=dict(num_classes=3, loss_cls=dict(use_sigmoid=False, class_weight=[1.0] * 3)),
        mask_head=dict(num_classes=3, loss_mask=dict(use_mask=True, class_weight=[1.0] * 3))))))
    with pytest.raises(DataError, match=r'bbox_head.loss_cls.class_weight has 3 entries but the '
                       r'loss weighs 4 class scores: .* \+ 1 \(a softmax head of mmdet'):
        check_loss_class_weights(det)
    det.model.roi_head.bbox_head.loss_cls.class_weight = [1.0] * 4
    check_loss_class_weights(det)


def test_segmentation_demo_on_data_of_another_class_count_names_class_weight(tmp_path):
    root = tmp_path / 'data'
    generate_demo_data('seg', root, '--size', '16', '--train-images', '1', '--val-images', '1')
    classes = '[background,circle,square,triangle,star]'
    result = run_python('tools/train.py', DEMO_SEG, '--work-dir', str(tmp_path / 'work'),
                        '--cfg-options', *data_root_options(root),
                        *[f'{split}_dataloader.dataset.metainfo.classes={classes}'
                          for split in ('train', 'val', 'test')],
                        'model.decode_head.num_classes=5', 'model.auxiliary_head.num_classes=5')
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: model.decode_head.loss_decode.class_weight has 4 entries but the loss weighs 5')


# --------------------------------------------------------------------- the demo data generator


@pytest.mark.parametrize('args, message', [
    (['--size', '0'], 'argument --size: 0 is too small: the valid range is 16 or more'),
    (['--train-per-class', '-2'], 'argument --train-per-class: -2 is too small: the valid '
     'range is 1 or more'),
    (['--val-images', '0'], 'argument --val-images: 0 is too small'),
])
def test_demo_data_generator_refuses_unusable_sizes_and_counts(tmp_path, args, message):
    result = run_python('tools/misc/generate_demo_data.py', 'cls', str(tmp_path / 'data'), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / 'data').exists()


# ------------------------------------------------------------- annotation lists (ImageNet)


def test_imagenet_config_without_its_annotation_list_is_one_line(tmp_path, capsys):
    import torch
    checkpoint = tmp_path / 'any.pth'
    torch.save({'state_dict': {}}, checkpoint)  # the data is checked before it is loaded
    test_tool = load_script('tools/test.py', 'vmamba_test_tool')
    code = test_tool.main([IMAGENET_TINY, str(checkpoint), '--work-dir', str(tmp_path / 'work'),
                           '--cfg-options', f'test_dataloader.dataset.data_root={tmp_path}'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith('error: test_dataloader.dataset: annotation list not found: '
                             f'{tmp_path}/meta/val.txt'), err


def _imagenet_val(root, lines):
    (root / 'meta').mkdir(exist_ok=True)
    (root / 'val').mkdir(exist_ok=True)
    (root / 'meta' / 'val.txt').write_text(''.join(f'{line}\n' for line in lines))
    return load_config(IMAGENET_TINY, {'test_dataloader.dataset.data_root': str(root)})


def test_annotation_list_problems_are_named(tmp_path):
    Image.new('RGB', (8, 8)).save(tmp_path / 'a.png')
    for name in ('a.png', 'b.png'):
        (tmp_path / 'val').mkdir(exist_ok=True)
        shutil.copy(tmp_path / 'a.png', tmp_path / 'val' / name)
    val_list = tmp_path / 'meta' / 'val.txt'
    cases = [
        (['a.png 3', 'b.png'], rf"line 2 of {val_list} is 'b.png', not \"<image path> "),
        (['a.png 3', 'b.png 1000'], rf'line 2 of {val_list} has label 1000, outside 0..999 '
                                    r'\(model.head.num_classes is 1000\)'),
        (['a.png 3', 'c.png 1'], rf"1 of the 2 images {val_list} lists are not on disk, e.g. "
                                 rf"\['{tmp_path}/val/c.png'\]"),
        ([], rf'the annotation list {val_list} is empty'),
    ]
    for lines, message in cases:
        with pytest.raises(DataError, match=message):
            check_datasets(_imagenet_val(tmp_path, lines), ('test_dataloader', ))
    # ImageNet file names hold no spaces, but a path with one is split at the last, as
    # mmpretrain does.
    shutil.copy(tmp_path / 'a.png', tmp_path / 'val' / 'with space.png')
    check_datasets(_imagenet_val(tmp_path, ['a.png 3', 'with space.png 999']),
                   ('test_dataloader', ))
    (tmp_path / 'val' / 'b.png').write_bytes(b'')
    with pytest.raises(DataError, match=r'1 of the 2 image files are empty'):
        check_datasets(_imagenet_val(tmp_path, ['a.png 3', 'b.png 1']), ('test_dataloader', ))
