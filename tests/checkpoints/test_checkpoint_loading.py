"""mmengine checkpoint loading on torch >= 2.6 (mmengine#1655) through vmamba-mm's loader."""
import os
import pickle

import pytest
import torch
import torch.nn as nn

pytest.importorskip('mmengine')

from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint  # noqa: E402

from vmamba_mm.checkpoint import UnsafeCheckpointError, UntrustedObject  # noqa: E402
from vmamba_mm.checkpoint.mmengine_loader import (load_from_local_safe,  # noqa: E402
                                                  register_checkpoint_loader, trusted_load)

from tests.paths import ROOT  # noqa: E402


@pytest.fixture(autouse=True)
def _loader_registered():
    assert register_checkpoint_loader()


def test_register_is_idempotent_and_takes_local_and_http_paths():
    for _ in range(3):
        assert register_checkpoint_loader()
    schemes = CheckpointLoader._schemes
    assert list(schemes).count('') == 1
    assert CheckpointLoader._get_checkpoint_loader('/some/dir/epoch_1.pth') is load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader('work_dirs/x.pth') is load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader(
        'https://example.org/x.pth').__name__ == 'load_from_http_safe'
    # other schemes keep their own loaders
    assert CheckpointLoader._get_checkpoint_loader('pavi://x').__name__ == 'load_from_pavi'


def test_importing_package_registers_loader():
    """A fresh interpreter: `import vmamba_mm` alone must install the loader."""
    import subprocess
    import sys
    code = ('import vmamba_mm\n'
            'from mmengine.runner.checkpoint import CheckpointLoader\n'
            "print(CheckpointLoader._get_checkpoint_loader('/a/b.pth').__name__)")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == 'load_from_local_safe'


def test_local_loader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _load_checkpoint(str(tmp_path / 'missing.pth'))


def test_plain_state_dict_through_mmengine(tmp_path):
    sd = {'w': torch.randn(3)}
    torch.save({'state_dict': sd, 'meta': {'epoch': 1}}, tmp_path / 'a.pth')
    ckpt = _load_checkpoint(str(tmp_path / 'a.pth'), map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], sd['w'])


def test_official_file_with_foreign_config_loads_as_placeholder(tmp_path):
    import argparse
    torch.save({'model': {'w': torch.ones(2)}, 'config': argparse.Namespace(lr=1.0)},
               tmp_path / 'off.pth')
    ckpt = _load_checkpoint(str(tmp_path / 'off.pth'), map_location='cpu')
    assert isinstance(ckpt['config'], UntrustedObject)
    assert ckpt['config'].state == {'lr': 1.0}


class _Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_malicious_checkpoint_refused_through_mmengine(tmp_path):
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _Evil(marker)}, tmp_path / 'e.pth')
    with pytest.raises(UnsafeCheckpointError, match='system'):
        _load_checkpoint(str(tmp_path / 'e.pth'))
    assert not marker.exists()


class _TofileEvil:
    """Pickles as ndarray.tofile(array, path), i.e. getattr(numpy.ndarray, 'tofile')(...)."""

    def __init__(self, np, marker):
        self.np, self.marker = np, marker

    def __reduce__(self):
        return (self.np.ndarray.tofile, (self.np.zeros(1), str(self.marker)))


def test_getattr_only_for_history_buffer_methods(tmp_path):
    """Runner checkpoints carry getattr(HistoryBuffer, 'min'); nothing else may use getattr."""
    np = pytest.importorskip('numpy')
    marker = tmp_path / 'written'
    torch.save({'f': _TofileEvil(np, marker)}, tmp_path / 'g.pth')
    with pytest.raises(pickle.UnpicklingError):
        trusted_load(str(tmp_path / 'g.pth'))
    assert not marker.exists()


# ------------------------------------------------------------------- real Runner save/resume

from mmengine.model import BaseModel  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x, y, mode='loss'):
        out = self.fc(x).squeeze(-1)
        if mode == 'loss':
            return {'loss': ((out - y)**2).mean()}
        return out


class _ToyDataset(Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(x=torch.tensor([i / 8.0, 1.0]), y=torch.tensor(i / 16.0))


def _runner(work_dir, max_epochs, load_from=None, resume=False):
    from mmengine.runner import Runner
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], gamma=0.1, by_epoch=True,
                             begin=0, end=10),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        load_from=str(load_from) if load_from else None,
        resume=resume,
        randomness=dict(seed=0),
        experiment_name=f'toy_{os.path.basename(str(work_dir))}_{os.getpid()}',
        default_scope=None,
        log_level='WARNING')


def test_runner_checkpoint_resumes_on_this_torch(tmp_path):
    first = _runner(tmp_path / 'run1', max_epochs=1)
    first.train()
    ckpt_path = tmp_path / 'run1' / 'epoch_1.pth'
    assert ckpt_path.is_file()
    trained = {k: v.clone() for k, v in first.model.state_dict().items()}

    if torch.__version__ >= '2.6':
        # what mmengine 0.10.7 itself does (torch.load without weights_only) fails on this torch
        with pytest.raises(pickle.UnpicklingError):
            torch.load(ckpt_path)

    ckpt = trusted_load(str(ckpt_path), map_location='cpu')
    from mmengine.logging.history_buffer import HistoryBuffer
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and len(buf.data[0]) == 2
    for k, v in trained.items():
        assert torch.equal(ckpt['state_dict'][k], v)

    second = _runner(tmp_path / 'run2', max_epochs=2, load_from=ckpt_path, resume=True)
    second.train()
    assert second.epoch == 2 and second.iter == 4
    # the message hub history of epoch 1 was restored and continued
    hist = second.message_hub.get_scalar('train/loss').data[0]
    assert len(hist) == 4
    assert hist[:2].tolist() == buf.data[0].tolist()
    # optimizer/scheduler state came back: epoch 2 runs at lr 0.1 * gamma
    lr = second.optim_wrapper.get_lr()['lr'][0]
    assert lr == pytest.approx(0.01)
    assert second.optim_wrapper.optimizer.state  # momentum buffers restored and in use
