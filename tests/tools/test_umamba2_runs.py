"""U-Mamba2 on the real stack through tools/train.py and tools/test.py, on the CPU: the demo with
click prompts learns above chance and tests with and without clicks; the objects demo finds the
clicked shape, which it cannot without the click; the medical click template
(the medical template plus clicks) trains and tests, with and without clicks, on a tiny set of
its layout; a loss that turns non-finite is named with its iteration."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from tests.demo_runs import constant_prediction_miou, metric, run_tool, train_and_test
from tests.paths import CONFIG_DIR
from tests.tool_runs import data_root_options

pytest.importorskip('mmseg')

DEMO = os.path.join(CONFIG_DIR, 'umamba2', 'umamba2_demo.py')
DEMO_CLICKS = os.path.join(CONFIG_DIR, 'umamba2', 'umamba2_demo_clicks.py')
DEMO_OBJECTS = os.path.join(CONFIG_DIR, 'umamba2', 'umamba2_demo_objects.py')
MEDICAL = os.path.join(CONFIG_DIR, 'umamba2', 'umamba2_medical-2d_template.py')
MEDICAL_CLICKS = os.path.join(CONFIG_DIR, 'umamba2', 'umamba2_medical-2d_clicks_template.py')
NO_CLICKS = 'test_dataloader.dataset.pipeline.3.num_clicks=0'
MEDICAL_NO_CLICKS = 'test_dataloader.dataset.pipeline.2.num_clicks=0'


@pytest.fixture(scope='module')
def clicks_demo(tmp_path_factory):
    return train_and_test(tmp_path_factory.mktemp('umamba2'), 'seg', DEMO_CLICKS,
                          train_images=100,
                          schedule=['train_cfg.max_iters=150', 'train_cfg.val_interval=150',
                                    'param_scheduler.0.end=5000'],
                          checkpoint='iter_150.pth')


def test_the_clicks_demo_learns_above_chance_with_and_without_clicks(clicks_demo, tmp_path):
    chance = constant_prediction_miou(clicks_demo.data / 'annotations' / 'validation')
    # 150 iterations of nnU-Net's SGD reach about 47 with clicks, 33 without (chance about 22.5)
    with_clicks = metric(clicks_demo.log, 'mIoU')
    assert with_clicks > chance + 5, (with_clicks, chance)
    unprompted = run_tool('tools/test.py', DEMO_CLICKS, str(clicks_demo.checkpoint), '--work-dir',
                          str(tmp_path), '--cfg-options', *data_root_options(clicks_demo.data),
                          NO_CLICKS)
    assert unprompted.returncode == 0, unprompted.stderr[-3000:]
    without_clicks = metric(unprompted.stdout + unprompted.stderr, 'mIoU')
    assert without_clicks > chance + 5, (without_clicks, chance)


def object_iou(log):
    row = re.findall(r'^\|\s+object\s+\|\s+([\d.]+)\s+\|', log, re.MULTILINE)
    assert row, log[-3000:]
    return float(row[-1])


def test_the_objects_demo_segments_the_clicked_shape_and_needs_the_click(tmp_path_factory,
                                                                          tmp_path):
    """The target is one shape of each scene, named only by its click: tested with the click the
    model finds it; without, it can only guess."""
    demo = train_and_test(tmp_path_factory.mktemp('umamba2_objects'), 'seg', DEMO_OBJECTS,
                          train_images=100,
                          schedule=['train_cfg.max_iters=300', 'train_cfg.val_interval=300',
                                    'param_scheduler.0.end=300'],
                          checkpoint='iter_300.pth')
    with_click = object_iou(demo.log)
    unprompted = run_tool('tools/test.py', DEMO_OBJECTS, str(demo.checkpoint), '--work-dir',
                          str(tmp_path), '--cfg-options', *data_root_options(demo.data),
                          NO_CLICKS)
    assert unprompted.returncode == 0, unprompted.stderr[-3000:]
    without_click = object_iou(unprompted.stdout + unprompted.stderr)
    assert with_click > without_click + 20, (with_click, without_click)


def write_medical_layout(root, train=4, val=2, size=48, seed=0):
    """images/{train,val}/*.png (grey) and labels/{train,val}/*.png: a brighter disc is class 1."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    for split, count in (('train', train), ('val', val)):
        for folder in ('images', 'labels'):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            centre = rng.uniform(12, size - 12, 2)
            disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < rng.uniform(6, 10) ** 2
            image = rng.normal(80, 20, (size, size)) + 90 * disc
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
                root / 'images' / split / f'case_{split}{index}.png')
            Image.fromarray(disc.astype(np.uint8)).save(
                root / 'labels' / split / f'case_{split}{index}.png')
    return root


# The template's network, two iterations at two images a step (the 48 x 48 images are smaller
# than the crop: they are used whole, padded to 64 x 64).
SHORT_MEDICAL_RUN = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                     'train_dataloader.batch_size=2']


def test_the_medical_click_template_trains_and_tests_on_its_layout(tmp_path):
    """The click template is the template plus clicks: one run covers both, tested with the
    clicks and without them."""
    data, work = write_medical_layout(tmp_path / 'data'), tmp_path / 'work'
    train = run_tool('tools/train.py', MEDICAL_CLICKS, '--work-dir', str(work), '--cfg-options',
                     *data_root_options(data, no_workers=True), *SHORT_MEDICAL_RUN)
    assert train.returncode == 0, train.stderr[-3000:]
    for extra in ((), (MEDICAL_NO_CLICKS, )):
        test = run_tool('tools/test.py', MEDICAL_CLICKS, str(work / 'iter_2.pth'), '--work-dir',
                        str(work), '--cfg-options', *data_root_options(data, no_workers=True),
                        *extra)
        assert test.returncode == 0, test.stderr[-3000:]
        log = test.stdout + test.stderr
        for name in ('mDice', 'mIoU'):
            assert 0 <= metric(log, name) <= 100, (name, extra)


def test_a_non_finite_loss_is_named_with_its_iteration(tmp_path):
    data = write_medical_layout(tmp_path / 'data', train=2, val=1)
    # A zero std turns every input pixel into +-inf: the first loss is not finite.
    result = run_tool('tools/train.py', MEDICAL, '--work-dir', str(tmp_path / 'work'),
                      '--cfg-options', *data_root_options(data, no_workers=True),
                      *SHORT_MEDICAL_RUN, 'model.data_preprocessor.std=[0,0,0]')
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert re.match(r'error: the loss became NaN or infinite at iteration 1: ', error), error
