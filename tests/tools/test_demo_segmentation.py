"""The segmentation demo on the real stack, on the CPU: generated data, a short training through
tools/train.py, then tools/test.py on the saved checkpoint and tools/dist_test.sh --tta."""

import pytest

from tests.demo_runs import (assert_show_dir_draws_every_test_image, constant_prediction_miou,
                             distributed_tta_test, metric, train_and_test)
from tests.paths import DEMO_SEGMENTATION as SEGMENTATION


# Short runs hold the learning rate near its peak (the decay is stretched far past their end).
@pytest.fixture(scope='module')
def segmentation(tmp_path_factory):
    return train_and_test(tmp_path_factory.mktemp('seg'), 'seg', SEGMENTATION, train_images=200,
                          schedule=['train_cfg.max_iters=400', 'train_cfg.val_interval=400',
                                    'param_scheduler.1.end=5000',
                                    'model.backbone.drop_path_rate=0.0'],
                          checkpoint='iter_400.pth')


def test_segmentation_demo_learns_above_chance(segmentation):
    chance = constant_prediction_miou(segmentation.data / 'annotations' / 'validation')
    assert 15 < chance < 30  # mostly background: about 0.9 / 4
    # This run reaches chance + 10 to 15 (the full demo about 70): a model that marks no shape
    # pixel, however sure of the background, stays at chance.
    assert metric(segmentation.log, 'mIoU') > chance + 6


def test_show_dir_draws_every_test_image(segmentation):
    assert_show_dir_draws_every_test_image(segmentation, 'images/validation')


def test_distributed_tta_of_the_segmentation_demo(segmentation, tmp_path):
    log = distributed_tta_test(SEGMENTATION, segmentation, tmp_path)
    chance = constant_prediction_miou(segmentation.data / 'annotations' / 'validation')
    # Six views averaged: as far above chance as the single view, within a few points of it.
    assert metric(log, 'mIoU') > chance + 6
    assert abs(metric(log, 'mIoU') - metric(segmentation.log, 'mIoU')) < 5
