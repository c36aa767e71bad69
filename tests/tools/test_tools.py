"""tools/train.py and tools/test.py on the real stack, with generated data, on the CPU."""
import functools
import multiprocessing
import os
import pickle
import platform
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tests.paths import DEMO_CLASSIFICATION as DEMO, DEMO_CLASSIFICATION_2D as DEMO_2D
from tests.paths import DEMO_CLASSIFICATION_SSD as DEMO_SSD
from tests.paths import DEMO_CLASSIFICATION_V2M as DEMO_V2M, ROOT
from tests.tool_runs import data_root_options as data_options
from tests.tool_runs import free_port, generate_demo_data, load_script
from tests.tool_runs import run_python as run_tool


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = generate_demo_data('cls', tmp_path_factory.mktemp('demo_cls'), '--train-per-class', '8',
                              '--val-per-class', '4')
    assert sorted(os.listdir(root / 'train')) == ['circle', 'square', 'stripes', 'triangle']
    return root


def test_train_then_test_the_saved_checkpoint(tiny_data, tmp_path):
    work = tmp_path / 'work'
    train = run_tool('tools/train.py', DEMO, '--work-dir', str(work), '--cfg-options',
                     *data_options(tiny_data), 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                     'default_hooks.checkpoint.interval=1')
    assert train.returncode == 0, train.stderr[-3000:]
    assert (work / 'epoch_1.pth').is_file()
    assert 'freed host memory kept: glibc malloc' in train.stdout + train.stderr or (
        platform.libc_ver()[0] != 'glibc')
    out = tmp_path / 'predictions.pkl'
    shown = tmp_path / 'shown'
    test = run_tool('tools/test.py', DEMO, str(work / 'epoch_1.pth'), '--work-dir', str(work),
                    '--out', str(out), '--show-dir', str(shown), '--release-freed-memory',
                    '--cfg-options', *data_options(tiny_data))
    assert test.returncode == 0, test.stderr[-3000:]
    assert 'freed host memory: glibc defaults (--release-freed-memory)' in test.stdout + test.stderr
    assert len(list(shown.glob('*.png'))) == 16  # every test image drawn with its prediction
    assert re.search(r'accuracy/top1: \d', test.stdout + test.stderr)
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 16  # 4 classes x 4 validation images

    # --tta: each image and its mirror, scores averaged: still one prediction per image.
    tta_out = tmp_path / 'tta.pkl'
    tta = run_tool('tools/test.py', DEMO, str(work / 'epoch_1.pth'), '--work-dir', str(work),
                   '--tta', '--out', str(tta_out), '--cfg-options', *data_options(tiny_data))
    assert tta.returncode == 0, tta.stderr[-3000:]
    assert re.search(r'accuracy/top1: \d', tta.stdout + tta.stderr)
    with open(tta_out, 'rb') as f:
        tta_predictions = pickle.load(f)
    assert len(tta_predictions) == 16
    assert any(not torch.allclose(a['pred_score'], b['pred_score'])
               for a, b in zip(predictions, tta_predictions))


@pytest.mark.parametrize('config', [DEMO, DEMO_2D, DEMO_V2M, DEMO_SSD],
                         ids=['1d-scan', '2d-scan', 'v2m-mixer', 'ssd-mixer'])
def test_demo_learns_well_above_chance(tmp_path, config):
    root = tmp_path / 'data'
    generate_demo_data('cls', root, '--train-per-class', '200', '--val-per-class', '50')
    train = run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options', *data_options(root), 'train_cfg.max_epochs=10',
                     'param_scheduler.1.end=10')
    assert train.returncode == 0, train.stderr[-3000:]
    top1 = [float(v) for v in re.findall(r'accuracy/top1: ([\d.]+)', train.stdout + train.stderr)]
    assert top1 and top1[-1] > 40.0, top1  # four classes: chance is 25 %


@pytest.mark.parametrize('args, message', [
    pytest.param(['--amp'], '--amp needs a CUDA GPU',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')),
    (['--cfg-options', 'train_dataloadr.batch_size=3'], "no 'train_dataloadr'"),
    (['--resume', '/nope/epoch_3.pth'], 'not found: /nope/epoch_3.pth'),
])
def test_bad_training_flags_are_named(args, message):
    result = run_tool('tools/train.py', DEMO, *args, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]


def test_imagenet_config_with_amp_on_a_cpu_says_what_to_do():
    result = run_tool('tools/train.py', 'configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py',
                      timeout=120)
    assert result.returncode == 2
    assert 'optim_wrapper.type=OptimWrapper' in result.stderr


def test_missing_checkpoint_and_config_are_named(tmp_path):
    result = run_tool('tools/test.py', DEMO, str(tmp_path / 'missing.pth'), timeout=120)
    assert result.returncode == 2 and 'missing.pth' in result.stderr
    result = run_tool('tools/train.py', 'configs/nope.py', timeout=120)
    assert result.returncode == 2 and 'configs/nope.py' in result.stderr


# No random augmentation, a fixed sample order, no drop path: the run is a function of its inputs.
DETERMINISTIC = ['train_dataloader.sampler.shuffle=False',
                 'train_dataloader.dataset.pipeline.1.prob=0.0',
                 'model.backbone.drop_path_rate=0.0', 'train_cfg.max_epochs=1',
                 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']


def _final_state(work):
    return torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=False)['state_dict']


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tiny_data, tmp_path):
    single, double = tmp_path / 'single', tmp_path / 'double'
    one = run_tool('tools/train.py', DEMO, '--work-dir', str(single), '--cfg-options',
                   *data_options(tiny_data), *DETERMINISTIC, 'train_dataloader.batch_size=8')
    assert one.returncode == 0, one.stderr[-3000:]
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    # Two ranks of 4 images see, step by step, the same 8 images as one process of 8.
    two = subprocess.run(['bash', 'tools/dist_train.sh', DEMO, '2', '--work-dir', str(double),
                          '--cfg-options', *data_options(tiny_data), *DETERMINISTIC,
                          'train_dataloader.batch_size=4'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    log = two.stdout + two.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # two ranks, gloo
    a, b = _final_state(single), _final_state(double)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


# After the run, in the training process: the group is gone before interpreter teardown, where
# gloo's threads would otherwise abort the rank ('terminate called without an active exception').
_TRAIN_THEN_REPORT_GROUP = """
import runpy, sys
import torch.distributed as dist
sys.argv = ['tools/train.py', *sys.argv[1:]]
try:
    runpy.run_path('tools/train.py', run_name='__main__')
except SystemExit as exc:
    print('exit code', exc.code, 'group still initialised', dist.is_initialized())
"""


def test_a_distributed_run_destroys_its_process_group_before_exit(tiny_data, tmp_path):
    port = free_port()
    env = dict(os.environ, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(port))
    result = run_tool('-c', _TRAIN_THEN_REPORT_GROUP, DEMO, '--launcher', 'pytorch',
                      '--work-dir', str(tmp_path), '--cfg-options',
                      *data_options(tiny_data, no_workers=True), 'train_cfg.max_epochs=1',
                      'train_cfg.val_interval=1', env=env)
    assert 'Distributed training: True' in result.stdout + result.stderr, result.stderr[-3000:]
    assert 'exit code 0 group still initialised False' in result.stdout, result.stderr[-3000:]


# Drop path and random flips on, samples shuffled, a validation between the epochs: every random
# stream of a run is in use.
RANDOM_RUN = ['model.backbone.drop_path_rate=0.3', 'train_dataloader.dataset.pipeline.1.prob=0.5',
              'train_dataloader.sampler.shuffle=True', 'train_dataloader.batch_size=16',
              'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
              'default_hooks.checkpoint.max_keep_ckpts=2', 'log_level=WARNING']


def _train_in_process(work, epochs, data, *args):
    train = load_script('tools/train.py', 'vmamba_train_tool')
    return train.main([DEMO, '--work-dir', str(work), *args, '--cfg-options',
                       *data_options(data, no_workers=True), *RANDOM_RUN,
                       f'train_cfg.max_epochs={epochs}',
                       f'experiment_name={work.name}_{epochs}_{os.getpid()}'])


def test_resume_gives_the_straight_runs_weights_bit_for_bit(tiny_data, tmp_path):
    """2 epochs straight against 1 + 1 resumed, 2 iterations each: every weight, optimizer
    tensor and scheduler state equal, not close."""
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    assert _train_in_process(straight, 2, tiny_data) == 0
    assert _train_in_process(resumed, 1, tiny_data) == 0
    assert _train_in_process(resumed, 2, tiny_data, '--resume') == 0
    a = torch.load(straight / 'epoch_2.pth', map_location='cpu', weights_only=False)
    b = torch.load(resumed / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == 4
    assert a['meta']['epoch'] == b['meta']['epoch'] == 2
    assert a['state_dict'].keys() == b['state_dict'].keys()
    unequal = [key for key in a['state_dict'] if not torch.equal(a['state_dict'][key],
                                                                 b['state_dict'][key])]
    assert not unequal, f'{len(unequal)} tensors differ, e.g. {unequal[:3]}'
    assert a['optimizer']['param_groups'] == b['optimizer']['param_groups']
    assert a['optimizer']['state'].keys() == b['optimizer']['state'].keys()
    for index, state in a['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(b['optimizer']['state'][index][name], value), (index, name)
    assert a['param_schedulers'] == b['param_schedulers']


class _RandomDraws(Dataset):
    """Each sample: one draw from NumPy, Python's random and torch, as transforms make them."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor([np.random.rand(), random.random(), torch.rand(()).item()],
                            dtype=torch.float64)


def _draws_of_epochs(first, stop):
    """What a persistent one-worker loader hands out in epochs first..stop-1 of a run that
    starts at `first` (a resumed run starts past 0)."""
    from mmengine.dataset import worker_init_fn as mmengine_worker_seeding

    from vmamba_mm.engine.random_state import EpochSeededWorkers
    epoch = multiprocessing.RawValue('q', 0)
    seeding = EpochSeededWorkers(0, 0, epoch, previous=functools.partial(
        mmengine_worker_seeding, num_workers=1, rank=0, seed=0))
    loader = DataLoader(_RandomDraws(), batch_size=2, num_workers=1, persistent_workers=True,
                        worker_init_fn=seeding)
    draws = []
    for number in range(first, stop):
        epoch.value = number  # as RandomStateHook.before_train_epoch sets it
        draws.append(torch.cat(list(loader)))
    return draws


def test_persistent_dataloader_workers_draw_the_same_after_a_resume():
    """A resumed run's fresh worker draws in its first epoch what a straight run's worker,
    alive since epoch 0, draws in that epoch (mmengine alone seeds a worker once, at its start)."""
    straight = _draws_of_epochs(0, 2)
    resumed = _draws_of_epochs(1, 2)
    assert not torch.equal(straight[0], straight[1])
    assert torch.equal(resumed[0], straight[1])


def test_bad_data_is_named_before_training(tiny_data, tmp_path):
    import shutil
    broken = tmp_path / 'data'
    shutil.copytree(tiny_data, broken)
    for image in (broken / 'train' / 'circle').iterdir():
        image.unlink()
    result = run_tool('tools/train.py', DEMO, '--cfg-options', *data_options(broken), timeout=120)
    assert result.returncode == 2 and str(broken / 'train' / 'circle') in result.stderr
    result = run_tool('tools/train.py', DEMO, '--cfg-options', *data_options(tiny_data),
                      'model.head.num_classes=5', timeout=120)
    assert result.returncode == 2 and 'num_classes is 5' in result.stderr
    assert 'model.head.num_classes=4' in result.stderr
    result = run_tool('tools/train.py', DEMO, '--cfg-options', *data_options(tmp_path / 'none'),
                      timeout=120)
    assert result.returncode == 2 and str(tmp_path / 'none' / 'train') in result.stderr


def test_an_image_that_does_not_decode_is_named(tiny_data, tmp_path):
    import shutil
    broken = tmp_path / 'data'
    shutil.copytree(tiny_data, broken)
    bad = sorted((broken / 'train' / 'square').iterdir())[0]
    bad.write_bytes(b'not a png at all')
    result = run_tool('tools/train.py', DEMO, '--work-dir', str(tmp_path / 'work'),
                      '--cfg-options', *data_options(broken), 'train_cfg.max_epochs=1',
                      timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith('error: image file does not decode: ') and str(bad) in last_line


def test_output_paths_that_take_no_files_are_named_before_the_run(tmp_path, capsys):
    checkpoint = tmp_path / 'any.pth'
    torch.save({'state_dict': {}}, checkpoint)  # checked before it is loaded
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    proc_message = 'cannot create files under /proc (No such file or directory); choose a ' \
                   'writable path.'
    test_tool = load_script('tools/test.py', 'vmamba_test_tool_outputs')
    train_tool = load_script('tools/train.py', 'vmamba_train_tool_outputs')
    erf_tool = load_script('tools/analysis_tools/erf.py', 'vmamba_erf_tool_outputs')
    cases = [
        (test_tool, [DEMO, str(checkpoint), '--out', '/proc/preds.pkl'],
         f'error: --out /proc/preds.pkl: {proc_message}'),
        (test_tool, [DEMO, str(checkpoint), '--work-dir', str(a_file / 'work')],
         f'error: --work-dir {a_file / "work"}: {a_file} is a file, not a folder; choose another '
         f'path.'),
        (test_tool, [DEMO, str(checkpoint), '--show-dir', '/proc/drawn'],
         f'error: --show-dir /proc/drawn: {proc_message}'),
        (train_tool, [DEMO, '--work-dir', '/proc/work'], f'error: --work-dir /proc/work: '
                                                         f'{proc_message}'),
        (erf_tool, [DEMO, '--random', '1', '--out', '/proc/erf.png'],
         f'error: --out /proc/erf.png: {proc_message}'),
    ]
    for tool, argv, message in cases:
        assert tool.main(argv) == 2, argv
        assert capsys.readouterr().err.strip().splitlines() == [message]
