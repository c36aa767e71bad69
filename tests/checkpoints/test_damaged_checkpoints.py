"""A checkpoint whose zip structure is whole but one tensor's stored bytes are damaged is refused
by every reader, which names the file and the damaged record: safe_load, trusted_load,
create_model, the converter, --resume's choice of checkpoint and tools/test.py."""
import contextlib
import importlib.util
import io
import os
import struct
import zipfile

import pytest
import torch
from mmengine.config import ConfigDict

import vmamba_mm
from vmamba_mm.checkpoint import CheckpointDamagedError, safe_load
from vmamba_mm.checkpoint.mmengine_loader import trusted_load
from vmamba_mm.engine.resume import ResumeError, check_resume_path, choose_resume_checkpoint

from tests.paths import CONVERTER, DEMO_CLASSIFICATION

SMALL = dict(depths=[1, 1, 1, 1], dims=16, ssm_d_state=1, ssm_ratio=1.0, forward_type='v05_noz',
             mlp_ratio=2.0, downsample_version='v3', patchembed_version='v2', norm_layer='ln2d')
LOCAL_HEADER = struct.Struct('<4sHHHHHIIIHH')  # the zip format's local file header, 30 bytes
NAN = struct.pack('<f', float('nan'))


def record_data_offset(path, name):
    """Where the stored bytes of zip record ``name`` start: after its local header, file name
    and extra field (torch pads the extra field to align storages)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        fields = LOCAL_HEADER.unpack(f.read(LOCAL_HEADER.size))
    assert fields[0] == b'PK\x03\x04'
    name_length, extra_length = fields[9], fields[10]
    return info.header_offset + LOCAL_HEADER.size + name_length + extra_length, info.file_size


def write_nans_into(path, name):
    """Overwrite the first floats of record ``name`` with NaNs, in place: the headers, the
    directory and the stored CRC stay as they were."""
    offset, size = record_data_offset(path, name)
    assert size >= 4 * len(NAN)
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(NAN * 4)


def storage_record(path, key_index=0):
    """The zip record of a storage (a tensor's bytes) of the checkpoint at ``path``."""
    with zipfile.ZipFile(path) as archive:
        storages = sorted((n for n in archive.namelist() if '/data/' in n),
                          key=lambda n: int(n.rsplit('/', 1)[1]))
    return storages[key_index]


@pytest.fixture(scope='module')
def damaged(tmp_path_factory):
    """A runner-like checkpoint and an official-layout one of a SMALL classifier, each with NaNs
    written over one storage record; the record names."""
    folder = tmp_path_factory.mktemp('damaged')
    torch.manual_seed(0)
    weights = vmamba_mm.create_model(SMALL, num_classes=4).state_dict()
    ours, official = folder / 'epoch_2.pth', folder / 'official.pth'
    torch.save({'state_dict': weights, 'meta': {'epoch': 2}}, ours)
    official_keys = {('classifier.head.' + k[len('head.fc.'):]) if k.startswith('head.fc.')
                     else k[len('backbone.'):]: v for k, v in weights.items()}
    torch.save({'model': official_keys}, official)
    records = {}
    for path in (ours, official):
        records[path.name] = storage_record(path, key_index=3)
        write_nans_into(path, records[path.name])
    return ours, official, records


def test_the_damage_is_what_torch_load_alone_would_accept(damaged):
    ours, _, _ = damaged
    with zipfile.ZipFile(ours) as archive:  # the structure is whole
        assert archive.namelist() and archive.infolist()[-1].file_size > 0
    loaded = torch.load(ours, weights_only=True)['state_dict']
    assert any(torch.isnan(value).any() for value in loaded.values())


def _names_the_damage(error, path, record):
    message = str(error.value)
    assert message.startswith(f'{path} is damaged: its record {record!r} does not match the '
                              f'CRC-32'), message
    assert '\n' not in message


@pytest.mark.parametrize('read', [safe_load, trusted_load])
def test_the_readers_refuse_it(damaged, read):
    ours, _, records = damaged
    with pytest.raises(CheckpointDamagedError) as error:
        read(str(ours))
    _names_the_damage(error, ours, records[ours.name])


def test_create_model_refuses_it(damaged):
    _, official, records = damaged
    with pytest.raises(CheckpointDamagedError) as error:
        vmamba_mm.create_model(SMALL, num_classes=4, pretrained=str(official))
    _names_the_damage(error, official, records[official.name])


def test_the_converter_refuses_it(damaged, tmp_path):
    _, official, records = damaged
    spec = importlib.util.spec_from_file_location('vmamba2mm_cli', CONVERTER)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = converter.main([str(official), str(tmp_path / 'out.pth')])
    assert status == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: {official} is damaged: its record '
                                                   f'{records[official.name]!r}')
    assert not (tmp_path / 'out.pth').exists()


def test_resume_refuses_it_and_auto_resume_takes_the_last_whole_one(damaged, tmp_path):
    ours, _, records = damaged
    work = tmp_path / 'work'
    work.mkdir()
    whole = work / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}, 'meta': {'epoch': 1}}, whole)
    newest = work / 'epoch_2.pth'
    newest.write_bytes(ours.read_bytes())
    (work / 'last_checkpoint').write_text(str(newest))
    cfg = ConfigDict(work_dir=str(work), default_hooks=dict(checkpoint=dict(interval=1)))
    with pytest.raises(ResumeError) as error:
        check_resume_path(cfg, str(newest))
    assert str(error.value).startswith(
        f'cannot resume from {newest}: it is damaged: its record {records[ours.name]!r} does '
        f'not match the CRC-32')
    assert f'the last good checkpoint in {work} is {whole}' in str(error.value)
    choice = choose_resume_checkpoint(cfg)
    assert choice.path == str(whole)
    assert f'names {newest}, which is damaged: its record {records[ours.name]!r}' in choice.note


def test_tools_test_refuses_it_with_one_error_line(damaged, capsys):
    ours, _, records = damaged
    from vmamba_mm.engine import run_test_command
    status = run_test_command([DEMO_CLASSIFICATION, str(ours), '--work-dir',
                               os.path.join(os.path.dirname(ours), 'test_run')])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f'error: checkpoint {ours} is damaged: its record '
                               f'{records[ours.name]!r} does not match the CRC-32')
