"""Pretrained weights into VSSM: exact values, expected gaps said, any other mismatch an error."""
import re

import pytest
import torch
from mmengine.logging import MMLogger

from vmamba_mm.models import VSSM

SMALL = dict(depths=[1, 1, 1, 1], dims=16, ssm_d_state=1, ssm_ratio=1.0,
             forward_type='v05_noz', mlp_ratio=2.0, downsample_version='v3',
             patchembed_version='v2', norm_layer='ln2d')


def _official_classifier_file(path, arch=SMALL):
    """An official-format classification checkpoint: `model` with classifier.norm/head."""
    source = VSSM(arch, out_indices=(3, ))
    model = {k: v.clone() for k, v in source.state_dict().items() if not k.startswith('outnorm')}
    model['classifier.norm.weight'] = torch.rand(128)
    model['classifier.norm.bias'] = torch.rand(128)
    model['classifier.head.weight'] = torch.rand(10, 128)
    model['classifier.head.bias'] = torch.rand(10)
    torch.save({'model': model, 'epoch': 3}, path)
    return model


def test_official_file_loads_and_new_norms_are_reported(tmp_path, capsys):
    MMLogger.get_instance('vmamba_mm_test_pretrained', log_level='INFO')
    path = tmp_path / 'official.pth'
    model = _official_classifier_file(path)
    backbone = VSSM(SMALL, out_indices=(0, 1, 2, 3),
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    ours = backbone.state_dict()
    for key, value in model.items():
        home = key.replace('classifier.norm.', 'outnorm3.')
        if key.startswith('classifier.head'):
            continue
        torch.testing.assert_close(ours[home], value)
    assert torch.equal(ours['outnorm0.weight'], torch.ones(16))  # not in the file: identity
    out = capsys.readouterr().out
    assert "initialised as identity" in out and 'outnorm0.weight' in out
    assert 'outnorm3.weight' not in out.split('identity')[1]


def test_project_checkpoint_with_prefix(tmp_path):
    source = VSSM(SMALL)
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(3, 128)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'ours.pth')
    backbone = VSSM(SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ours.pth'),
                                         prefix='backbone.'))
    backbone.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def test_mismatching_checkpoint_lists_the_keys(tmp_path):
    path = tmp_path / 'official.pth'
    _official_classifier_file(path, arch=dict(SMALL, depths=[1, 1, 2, 1]))
    backbone = VSSM(SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(KeyError) as info:
        backbone.init_weights()
    message = str(info.value)
    # the one-line summary of every loader: how many keys of each kind, the first three named
    assert re.search(r'does not fit this VSSM \(.*\): \d+ unexpected keys \(layers\.2\.blocks\.1\.',
                     message), message

    wide = dict(SMALL, dims=24)
    _official_classifier_file(path, arch=wide)
    with pytest.raises(KeyError, match=r'keys of another shape \(patch_embed\.'):
        VSSM(SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_missing_checkpoint_path_is_an_error_not_a_random_start(tmp_path):
    missing = tmp_path / 'nope.pth'
    backbone = VSSM(SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(missing)))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        backbone.init_weights()
