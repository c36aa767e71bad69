"""Checkpoints that survive kill -9, --resume that checks what it resumes, strict test loading,
and a NaN loss that stops the run: tools/train.py and tools/test.py on tiny generated data."""
import os
import re
import shutil

import pytest
import torch

from tests.official import official_layout
from tests.paths import DEMO_CLASSIFICATION as DEMO, ROOT
from tests.tool_runs import data_root_options, generate_demo_data, run_python

# A child that runs tools/train.py's main with one step of AtomicCheckpointHook replaced by a
# SIGKILL of itself when that step is about to act on the file named `target`.
KILLING_TRAIN = '''
import os, signal, sys
sys.path.insert(0, {root!r})
from vmamba_mm.engine.hooks import AtomicCheckpointHook

step, target = sys.argv[1], sys.argv[2]
original = getattr(AtomicCheckpointHook, step)


def killed_at_target(self, *paths):
    if any(os.path.basename(path) == target for path in paths):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *paths)


setattr(AtomicCheckpointHook, step, killed_at_target)
sys.path.insert(0, os.path.join({root!r}, 'tools'))
import train
sys.exit(train.main(sys.argv[3:]))
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return generate_demo_data('cls', tmp_path_factory.mktemp('demo_cls'), '--train-per-class', '4',
                              '--val-per-class', '2')


def options(data, epochs, *extra):
    """One iteration per epoch (16 images, batch 32), a checkpoint every epoch, the last kept."""
    return ['--cfg-options', *data_root_options(data, no_workers=True),
            f'train_cfg.max_epochs={epochs}',
            'train_cfg.val_interval=10', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=1', *extra]


def train(work, data, epochs, *args, extra=()):
    return run_python('tools/train.py', DEMO, '--work-dir', str(work), *args,
                      *options(data, epochs, *extra))


def log_of(result):
    return result.stdout + result.stderr


def copy_run(source, work):
    """A copy of a finished run's work dir, its last_checkpoint pointing into the copy."""
    shutil.copytree(source, work)
    pointer = work / 'last_checkpoint'
    pointer.write_text(str(work / os.path.basename(pointer.read_text().strip())))
    return work


def checkpoint_epoch(path):
    return torch.load(path, map_location='cpu', weights_only=False)['meta']['epoch']


def checkpoint_files(work):
    return sorted(p.name for p in work.iterdir() if '.pth' in p.name)


@pytest.fixture(scope='module')
def one_epoch(data, tmp_path_factory):
    """`--resume` where nothing was saved yet: a plain note, then one epoch from scratch."""
    work = tmp_path_factory.mktemp('runs') / 'one_epoch'
    result = train(work, data, 1, '--resume')
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result


@pytest.fixture(scope='module')
def other_width(data, tmp_path_factory):
    """A checkpoint of the same architecture at half the width."""
    work = tmp_path_factory.mktemp('runs') / 'other_width'
    result = train(work, data, 1, extra=('model.backbone.arch.dims=16',
                                         'model.head.in_channels=128'))
    assert result.returncode == 0, result.stderr[-3000:]
    return work / 'epoch_1.pth'


def test_resume_with_nothing_there_says_so_and_trains_from_scratch(one_epoch):
    work, result = one_epoch
    assert f'no checkpoint found in {work}; training starts from scratch' in log_of(result)
    assert 'Auto resumed' not in log_of(result)
    assert checkpoint_files(work) == ['epoch_1.pth']
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')


@pytest.mark.parametrize('step, target, left, last', [
    # Killed with the new checkpoint complete but not yet renamed into place.
    ('_move_into_place', 'epoch_2.pth', ['epoch_1.pth', 'epoch_2.pth.incomplete'], 1),
    # Killed after the rename and the last_checkpoint update, before the old one is deleted.
    ('_remove_checkpoint', 'epoch_1.pth', ['epoch_1.pth', 'epoch_2.pth'], 2),
])
def test_a_kill_during_a_save_leaves_a_run_that_resumes_to_the_end(one_epoch, data, tmp_path,
                                                                   step, target, left, last):
    work = copy_run(one_epoch[0], tmp_path / 'work')
    script = tmp_path / 'killing_train.py'
    script.write_text(KILLING_TRAIN.format(root=ROOT))
    killed = run_python(str(script), step, target, DEMO, '--work-dir', str(work), '--resume',
                        *options(data, 2))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert checkpoint_files(work) == left
    assert (work / 'last_checkpoint').read_text() == str(work / f'epoch_{last}.pth')
    assert checkpoint_epoch(work / f'epoch_{last}.pth') == last

    resumed = train(work, data, 2, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resumed epoch: {last}' in log_of(resumed)
    for name in left:
        if name.endswith('.incomplete'):
            assert f'removed {work / name}, left by a checkpoint save that was interrupted' in \
                log_of(resumed)
    assert checkpoint_files(work) == ['epoch_2.pth']  # max_keep_ckpts=1; no temporary left
    assert checkpoint_epoch(work / 'epoch_2.pth') == 2
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_2.pth')


def test_a_truncated_checkpoint_is_named_and_auto_resume_takes_the_last_whole_one(
        one_epoch, data, tmp_path):
    work = copy_run(one_epoch[0], tmp_path / 'work')
    whole = work / 'epoch_1.pth'
    truncated = work / 'epoch_2.pth'
    truncated.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    (work / 'last_checkpoint').write_text(str(truncated))

    named = train(work, data, 2, '--resume', str(truncated))
    assert named.returncode == 2
    error = named.stderr.strip().splitlines()[-1]
    assert error.startswith(f'error: cannot resume from {truncated}: it is not a whole torch')
    assert f'the last good checkpoint in {work} is {whole}' in error

    resumed = train(work, data, 2, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (f'{work / "last_checkpoint"} names {truncated}, which is not a whole torch '
            f'checkpoint') in log_of(resumed)
    assert f'resuming from {whole}, the newest whole checkpoint' in log_of(resumed)
    assert 'resumed epoch: 1' in log_of(resumed)
    assert checkpoint_epoch(truncated) == 2


@pytest.mark.parametrize('make, summary', [
    ('other_width', r'\d+ keys of another shape \(backbone\.\S+ \(8, [^)]*\) in the checkpoint '
                    r'vs \(16, [^)]*\) in the model'),
    ('random_bytes', r'is not a whole torch checkpoint'),
])
def test_a_checkpoint_that_does_not_fit_stops_the_test(other_width, data, tmp_path, make,
                                                       summary):
    if make == 'other_width':
        checkpoint = other_width
    else:
        checkpoint = tmp_path / 'random.pth'
        checkpoint.write_bytes(os.urandom(4096))
    result = run_python('tools/test.py', DEMO, str(checkpoint), *options(data, 1))
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('error: ') and str(checkpoint) in error
    assert re.search(summary, error), error
    assert 'accuracy/top1' not in log_of(result)


def test_an_official_file_is_converted_and_tested(one_epoch, data, tmp_path):
    checkpoint = tmp_path / 'official.pth'
    weights = torch.load(one_epoch[0] / 'epoch_1.pth', map_location='cpu',
                         weights_only=False)['state_dict']
    torch.save(official_layout(weights), checkpoint)
    result = run_python('tools/test.py', DEMO, str(checkpoint), *options(data, 1))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1' in log_of(result)
    assert 'do not match' not in log_of(result)  # mmengine's warning of a partial load


def test_resuming_from_another_models_checkpoint_says_so(other_width, data, tmp_path):
    result = train(tmp_path / 'work', data, 2, '--resume', str(other_width))
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f'error: cannot resume from {other_width}: it is a checkpoint of '
                            f'another model: ')
    assert 'parameter groups' not in log_of(result)


def test_a_non_finite_loss_stops_before_its_weights_are_saved(one_epoch, data, tmp_path):
    work = copy_run(one_epoch[0], tmp_path / 'work')
    good = (work / 'epoch_1.pth').read_bytes()
    # A zero std turns every input pixel into +-inf: the first loss of epoch 2 is not finite.
    result = train(work, data, 2, '--resume', extra=('data_preprocessor.std=[0,0,0]', ))
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert re.match(r'error: the loss became NaN or infinite at epoch 2, iteration 1 of the epoch '
                    r'\(2 in all\): loss=(nan|inf)\. Training stopped before these weights were '
                    r'saved', error), error
    assert f'the last good checkpoint is {work / "epoch_1.pth"}' in error
    assert checkpoint_files(work) == ['epoch_1.pth']
    assert (work / 'epoch_1.pth').read_bytes() == good
