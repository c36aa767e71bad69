"""What the demo tests share: generate a set, train on it through tools/train.py, test the
checkpoint through tools/test.py (and tools/dist_test.sh), read the metrics from the logs."""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from tests.paths import ROOT
from tests.tool_runs import data_root_options as data_options
from tests.tool_runs import free_port, generate_demo_data

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


def distributed_tta_test(config, demo, work_dir):
    """tools/dist_test.sh CONFIG CKPT 2 --tta: two gloo processes, as users run eight on GPUs."""
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    test = run_command('bash', 'tools/dist_test.sh', config, str(demo.checkpoint), '2', '--tta',
                       '--work-dir', str(work_dir), '--cfg-options', *data_options(demo.data),
                       env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    return test.stdout + test.stderr


def assert_show_dir_draws_every_test_image(demo, images):
    """Every test image drawn: ground truth on the left, predictions on the right."""
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
