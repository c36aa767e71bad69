"""The detection and segmentation demos on the real stack, on the CPU: generated data, a short
training through tools/train.py, then tools/test.py on the saved checkpoint."""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from tests.paths import DEMO_DETECTION as DETECTION, DEMO_SEGMENTATION as SEGMENTATION, ROOT
from tests.tool_runs import data_root_options as data_options
from tests.tool_runs import generate_demo_data

VAL_IMAGES = 16


# The timeout leaves room for a busy 2-core machine, which runs these several times slower.
def run_command(*command, timeout=1800, env=None):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)


def run_tool(*args):
    return run_command(sys.executable, *args)


class DemoRun(NamedTuple):
    data: Path  # the generated set's root
    log: str  # tools/test.py's output
    shown: Path  # the --show-dir folder
    checkpoint: Path


def train_and_test(tmp_path, task, config, train_images, schedule, checkpoint, test_options=()):
    """Generate a set, train on it, test the checkpoint drawing every prediction.

    Returns the DemoRun.
    """
    data, work, shown = tmp_path / 'data', tmp_path / 'work', tmp_path / 'shown'
    generate_demo_data(task, data, '--train-images', train_images, '--val-images', VAL_IMAGES)
    train = run_tool('tools/train.py', config, '--work-dir', str(work), '--cfg-options',
                     *data_options(data), *schedule)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (work / checkpoint).is_file(), sorted(os.listdir(work))
    test = run_tool('tools/test.py', config, str(work / checkpoint), '--work-dir', str(work),
                    '--show-dir', str(shown), '--cfg-options', *data_options(data),
                    *test_options)
    assert test.returncode == 0, test.stderr[-3000:]
    return DemoRun(data, test.stdout + test.stderr, shown, work / checkpoint)


def metric(log, name):
    values = re.findall(rf'{name}: (-?[\d.]+)', log)
    assert values, f'no {name} in the test log:\n{log[-3000:]}'
    return float(values[-1])


# Short runs hold the learning rate near its peak (the decay is stretched far past their end):
# a schedule that decays within a few hundred steps leaves a model from scratch half-trained.
@pytest.fixture(scope='module')
def detection(tmp_path_factory):
    # 200 images x 10 epochs / 4 a step = 500 steps. Seven epochs ended on the steep part of the
    # learning curve, where rounding decides the score: bbox mAP 0.007 to 0.06 across seeds and
    # between numerically equivalent scan kernels; seed 0 gives 0.06 after 8 epochs, 0.48 after 10.
    return train_and_test(tmp_path_factory.mktemp('det'), 'det', DETECTION, train_images=200,
                          schedule=['train_cfg.max_epochs=10', 'param_scheduler.1.end=100',
                                    'model.backbone.drop_path_rate=0.0'],
                          checkpoint='epoch_10.pth',
                          # A short run's scores are low: draw boxes from the evaluation's floor.
                          test_options=['default_hooks.visualization.score_thr=0.05'])


@pytest.fixture(scope='module')
def segmentation(tmp_path_factory):
    return train_and_test(tmp_path_factory.mktemp('seg'), 'seg', SEGMENTATION, train_images=200,
                          schedule=['train_cfg.max_iters=400', 'train_cfg.val_interval=400',
                                    'param_scheduler.1.end=5000',
                                    'model.backbone.drop_path_rate=0.0'],
                          checkpoint='iter_400.pth')


def test_detection_demo_learns_above_chance(detection):
    log = detection.log
    # Chance: the initial weights (a run at learning rate 0) score 0.000 on every COCO figure; a
    # box must match a shape with IoU >= 0.5 and the right class to count at all. This run
    # reaches about 0.5 (the full demo about 0.6).
    assert metric(log, 'coco/bbox_mAP') > 0.02
    assert metric(log, 'coco/segm_mAP') > 0.02


def constant_prediction_miou(label_folder):
    """mIoU of the best constant prediction, as mmseg's IoUMetric counts it.

    Predicting class k everywhere scores IoU n_k / n on k and 0 on every other class present;
    classes absent from the ground truth and never predicted are left out of the mean.
    """
    counts = np.zeros(256, np.int64)
    for name in os.listdir(label_folder):
        counts += np.bincount(np.array(Image.open(label_folder / name)).ravel(), minlength=256)
    counts = counts[1:]  # reduce_zero_label: label 0 is ignored, label k + 1 is class k
    present = counts > 0
    return 100 * counts.max() / counts.sum() / present.sum()


def test_segmentation_demo_learns_above_chance(segmentation):
    chance = constant_prediction_miou(segmentation.data / 'annotations' / 'validation')
    assert 15 < chance < 30  # mostly background: about 0.9 / 4
    # This run reaches chance + 10 to 15 (the full demo about 70): a model that marks no shape
    # pixel, however sure of the background, stays at chance.
    assert metric(segmentation.log, 'mIoU') > chance + 6


@pytest.mark.parametrize('run, images', [('detection', 'val'),
                                         ('segmentation', 'images/validation')])
def test_show_dir_draws_every_test_image(run, images, request):
    demo = request.getfixturevalue(run)
    drawn = sorted(demo.shown.rglob('*.png'))
    assert len(drawn) == VAL_IMAGES, drawn
    for path in drawn:
        name = path.name.split('.')[0]  # 00003.png (mmdet) or test_00003.jpg_0.png (mmseg)
        original = np.array(Image.open(next((demo.data / images).glob(name[-5:] + '.*'))),
                            np.int16)
        picture = np.array(Image.open(path), np.int16)
        # Ground truth on the left, predictions on the right, each over the test image.
        assert picture.shape == (original.shape[0], 2 * original.shape[1], 3)
        predictions = picture[:, original.shape[1]:]
        assert (np.abs(predictions - original).max(axis=2) > 40).mean() > 0.001, path


def distributed_tta_test(config, demo, work_dir):
    """tools/dist_test.sh CONFIG CKPT 2 --tta: two gloo processes, as users run eight on GPUs."""
    env = dict(os.environ, PYTHON=sys.executable, PORT='29647')
    test = run_command('bash', 'tools/dist_test.sh', config, str(demo.checkpoint), '2', '--tta',
                       '--work-dir', str(work_dir), '--cfg-options', *data_options(demo.data),
                       env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    return test.stdout + test.stderr


def test_distributed_tta_of_the_detection_demo(detection, tmp_path):
    log = distributed_tta_test(DETECTION, detection, tmp_path)
    # Boxes merged over 3 sizes x 2 flips; this run's single-view figure is about 0.5.
    assert metric(log, 'coco/bbox_mAP') > 0.02
    assert 'only box mAP is reported' in log and 'coco/segm_mAP' not in log


def test_distributed_tta_of_the_segmentation_demo(segmentation, tmp_path):
    log = distributed_tta_test(SEGMENTATION, segmentation, tmp_path)
    chance = constant_prediction_miou(segmentation.data / 'annotations' / 'validation')
    # Six views averaged: as far above chance as the single view, within a few points of it.
    assert metric(log, 'mIoU') > chance + 6
    assert abs(metric(log, 'mIoU') - metric(segmentation.log, 'mIoU')) < 5
