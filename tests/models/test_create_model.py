"""vmamba_mm.create_model: the nine archs, the mm logits, feature maps, pretrained files."""
import logging
import os

import pytest
import torch

import vmamba_mm
from tests.official import CLASSIFIERS, VMAMBA_2D, load_official_keys, official_layout
from tests.paths import CONFIG_DIR
from vmamba_mm.checkpoint import UnsafeCheckpointError

SIZE = 64  # the smallest input the v1 and v2 archs both take is 32; 64 keeps every stage 2x2+


def _image(seed=0, size=SIZE):
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _mm_classifier(arch):
    """The mmpretrain ImageClassifier that configs/vmamba/vmamba-<arch>_8xb128_in1k.py builds."""
    config = pytest.importorskip('mmengine.config')
    registry = pytest.importorskip('mmengine.registry')
    models = pytest.importorskip('mmpretrain.registry').MODELS
    cfg = config.Config.fromfile(os.path.join(CONFIG_DIR, 'vmamba',
                                              f'vmamba-{arch}_8xb128_in1k.py'))
    cfg.model.data_preprocessor = cfg.data_preprocessor  # as the Runner does
    with registry.DefaultScope.overwrite_default_scope('mmpretrain'):
        return models.build(cfg.model)


def test_list_models_is_the_released_archs_and_the_other_families():
    assert vmamba_mm.list_models('v2m-*') == ['v2m-tiny', 'v2m-small']
    assert vmamba_mm.list_models('ssd-*') == ['ssd-tiny', 'ssd-small']
    other_families = vmamba_mm.list_models('v2m-*') + vmamba_mm.list_models('ssd-*')
    assert sorted(vmamba_mm.list_models()) == sorted([*CLASSIFIERS, *VMAMBA_2D, *other_families])
    assert vmamba_mm.list_models('2dvmamba-*') == ['2dvmamba-tiny', '2dvmamba-small']
    assert vmamba_mm.list_models('*-s1l*') == ['tiny-s1l8', 'small-s1l20', 'base-s1l20']


@pytest.mark.parametrize('arch', ['tiny-s1l8', 'vanilla-tiny'])
def test_logits_equal_the_mm_classifier_of_the_config(arch):
    mm_model = _mm_classifier(arch)
    ours = vmamba_mm.create_model(arch)
    theirs = mm_model.state_dict()
    assert sorted(ours.state_dict()) == sorted(theirs)  # one checkpoint loads into both
    assert sum(p.numel() for p in ours.parameters()) == CLASSIFIERS[arch].params
    ours.load_state_dict(theirs, strict=True)
    x = _image()
    with torch.no_grad():
        expected = mm_model.eval()(x, mode='tensor')
    torch.testing.assert_close(_logits(ours, x), expected, rtol=1e-6, atol=1e-6)


def test_features_only_gives_the_stage_maps_with_their_strides():
    model = vmamba_mm.create_model('tiny-s2l5', features_only=True).eval()
    info = model.feature_info
    assert info.channels() == [96, 192, 384, 768] and info.reduction() == [4, 8, 16, 32]
    assert [entry['module'] for entry in info] == [f'backbone.outnorm{i}' for i in range(4)]
    maps = model(_image())
    assert [tuple(m.shape) for m in maps] == [
        (1, channels, SIZE // stride, SIZE // stride)
        for channels, stride in zip(info.channels(), info.reduction())]

    two = vmamba_mm.create_model('tiny-s2l5', features_only=True, out_indices=(1, 3))
    assert two.feature_info.channels() == [192, 768] and two.feature_info.reduction() == [8, 32]
    assert [m.shape[1] for m in two.eval()(_image())] == [192, 768]


def test_pretrained_cfg_is_the_official_evaluation():
    cfg = vmamba_mm.create_model('tiny-s1l8', num_classes=10).pretrained_cfg
    assert cfg['input_size'] == (3, 224, 224) and cfg['crop_pct'] == pytest.approx(224 / 256)
    assert cfg['interpolation'] == 'bicubic' and cfg['num_classes'] == 10
    assert cfg['mean'] == pytest.approx((0.485, 0.456, 0.406))
    assert cfg['std'] == pytest.approx((0.229, 0.224, 0.225))
    assert cfg['first_conv'] == 'backbone.patch_embed.0' and cfg['classifier'] == 'head.fc'


def test_settings_reach_the_backbone_and_unknown_ones_are_named():
    model = vmamba_mm.create_model('tiny-s1l8', drop_path_rate=0.0, channel_first=True)
    assert model.backbone.channel_first
    assert all(block.drop_path.drop_prob == 0.0 for stage in model.backbone.layers
               for block in stage.blocks)
    with pytest.raises(TypeError, match="'drop_rate'"):
        vmamba_mm.create_model('tiny-s1l8', drop_rate=0.1)
    with pytest.raises(ValueError, match='features_only=True'):
        vmamba_mm.create_model('tiny-s1l8', out_indices=(3, ))


# ----------------------------------------------------------------------------- pretrained files

class CfgNode(dict):
    """A yacs-like config, as official files pickle under 'config'. Loading must never run it."""

    ran = []

    def __setstate__(self, state):
        CfgNode.ran.append(state)


@pytest.fixture(scope='module')
def official_file(tmp_path_factory):
    """An official-layout release file of tiny-s1l8, the source model and an input's logits."""
    torch.manual_seed(3)
    source = vmamba_mm.create_model('tiny-s1l8').eval()
    model = official_layout(source.state_dict())
    shapes = load_official_keys()['vmamba_tiny_s1l8']['state_dict']
    assert {k: list(v.shape) for k, v in model.items()} == shapes  # the official key set
    config = CfgNode(MODEL=CfgNode(TYPE='vssm'))
    config.__dict__['frozen'] = True  # a BUILD with state, as yacs pickles it
    ema = {k: v + 1 for k, v in model.items()}
    path = tmp_path_factory.mktemp('official') / 'vssm_tiny_0230_ckpt_epoch_262.pth'
    torch.save({'model': model, 'model_ema': ema, 'config': config, 'epoch': 262}, path)
    return path, source, _logits(source, _image(1))


def test_official_file_loads_strictly_with_the_same_logits(official_file, caplog):
    path, _, expected = official_file
    caplog.set_level(logging.INFO, logger='vmamba_mm')
    model = vmamba_mm.create_model('tiny-s1l8', pretrained=str(path))
    torch.testing.assert_close(_logits(model, _image(1)), expected, rtol=0, atol=0)
    assert not CfgNode.ran  # the pickled config's code never ran
    assert model.pretrained_cfg['file'] == str(path)
    assert f'from {path}' in caplog.text


def test_an_official_2dvmamba_file_loads_strictly_and_its_scan_matters(tmp_path):
    torch.manual_seed(4)
    source = vmamba_mm.create_model('2dvmamba-tiny').eval()
    model = official_layout(source.state_dict())
    shapes = load_official_keys()['vmamba_tiny_s1l8']['state_dict']
    assert {k: list(v.shape) for k, v in model.items()} == shapes  # VMamba's keys
    path = tmp_path / '2dvmamba_tiny.pth'
    torch.save({'model': model, 'epoch': 299}, path)
    x = _image(5)
    loaded = _logits(vmamba_mm.create_model('2dvmamba-tiny', pretrained=path), x)
    torch.testing.assert_close(loaded, _logits(source, x), rtol=0, atol=0)
    # The same weights with VMamba's 1D scans compute something else: at initialisation the scan
    # branches are a small part of the residual stream, yet 1e-5 is far above float32 rounding.
    one_d = _logits(vmamba_mm.create_model('tiny-s1l8', pretrained=path), x)
    assert (one_d - loaded).abs().max() > 1e-5


def test_features_only_loads_the_backbone_and_says_the_head_is_unused(official_file, caplog):
    path, source, _ = official_file
    caplog.set_level(logging.INFO, logger='vmamba_mm')
    features = vmamba_mm.create_model('tiny-s1l8', pretrained=path, features_only=True).eval()
    x = _image(2)
    with torch.no_grad():
        torch.testing.assert_close(features(x)[-1], source.forward_features(x), rtol=0, atol=0)
        # stages 0-2 have no norm in a classifier file: identity, and the log says so
        assert torch.equal(features.backbone.outnorm0.weight, torch.ones(96))
    assert 'backbone.outnorm0.weight' in caplog.text and 'identity' in caplog.text
    assert 'Not used' in caplog.text and 'head.fc.weight' in caplog.text


def test_a_file_of_another_arch_is_refused_naming_the_keys(official_file):
    path, _, _ = official_file
    with pytest.raises(KeyError) as info:
        vmamba_mm.create_model('tiny-s2l5', pretrained=path)
    message = str(info.value)
    assert str(path) in message and 'tiny-s2l5' in message
    assert 'unexpected keys (backbone.layers.2.blocks.5.' in message  # s1l8 has 8 blocks, s2l5 5
    assert 'keys of another shape (backbone.layers.0.blocks.0.op.x_proj_weight (4, 8, 96) in the ' \
           'checkpoint vs (4, 8, 192) in the model' in message  # ssm_ratio 1 against 2


def test_a_head_of_another_size_says_how_to_fine_tune(official_file):
    path, _, _ = official_file
    with pytest.raises(KeyError, match=r'head\.fc\.weight \(1000, 768\) in the checkpoint vs '
                       r'\(10, 768\) in the model') as info:
        vmamba_mm.create_model('tiny-s1l8', pretrained=path, num_classes=10)
    assert 'num_classes=1000, then model.reset_classifier(10)' in str(info.value)
    model = vmamba_mm.create_model('tiny-s1l8', pretrained=path)
    model.reset_classifier(10)
    assert model(_image()).shape == (1, 10) and model.pretrained_cfg['num_classes'] == 10


class _SystemCall:

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command, ))


def test_a_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    model = vmamba_mm.create_model('tiny-s1l8')
    torch.save({'model': official_layout(model.state_dict()),
                'config': _SystemCall(f'touch {marker}')}, path)
    with pytest.raises(UnsafeCheckpointError, match='system') as info:
        vmamba_mm.create_model('tiny-s1l8', pretrained=path)
    assert str(path) in str(info.value) and not marker.exists()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        vmamba_mm.create_model('tiny-s1l8', pretrained=tmp_path / 'nope.pth')
    with pytest.raises(ValueError, match='no weight registry'):
        vmamba_mm.create_model('tiny-s1l8', pretrained=True)
