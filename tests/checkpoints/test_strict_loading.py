"""Every way of loading weights into a VMamba model is strict and converts official files:
mmpretrain's get_model, inference_model and inferencers, mmengine's load_checkpoint, and
create_model, on small checkpoint files written here (ours, official-layout, another arch)."""
import numpy as np
import pytest
import torch
from PIL import Image

import vmamba_mm
from tests.official import official_layout
from vmamba_mm.checkpoint.fit import CheckpointMismatchError

NAME = 'vmamba-tiny-s1l8_8xb128_in1k'
SMALL = dict(depths=[1, 1, 1, 1], dims=16, ssm_d_state=1, ssm_ratio=1.0, forward_type='v05_noz',
             mlp_ratio=2.0, downsample_version='v3', patchembed_version='v2', norm_layer='ln2d')
DEEPER = dict(SMALL, depths=[1, 1, 2, 1])  # one block more in stage 2: more keys, same shapes
CLASSES = 5


def small_model_by_name(pretrained=None):
    """The model of NAME's config, shrunk to the SMALL arch (its head to fit)."""
    import mmpretrain
    # _delete_: the config's arch is a name, replaced by a dict
    return mmpretrain.get_model(NAME, pretrained=pretrained,
                                backbone=dict(arch=dict(SMALL, _delete_=True)),
                                head=dict(in_channels=128, num_classes=CLASSES)).eval()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Checkpoints of one SMALL classifier (ours, official layout), one of DEEPER, and the
    source model's logits on an input."""
    folder = tmp_path_factory.mktemp('strict_loading')
    torch.manual_seed(5)
    source = vmamba_mm.create_model(SMALL, num_classes=CLASSES).eval()
    for parameter in source.parameters():  # away from the init a fresh build would give
        torch.nn.init.normal_(parameter, std=0.05)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = source(image)
    paths = dict(ours=folder / 'ours.pth', official=folder / 'official.pth',
                 deeper=folder / 'deeper.pth')
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, paths['ours'])
    torch.save({'model': official_layout(source.state_dict()), 'epoch': 30}, paths['official'])
    deeper = vmamba_mm.create_model(DEEPER, num_classes=CLASSES)
    torch.save({'state_dict': deeper.state_dict(), 'meta': {}}, paths['deeper'])
    return paths, image, logits


@pytest.mark.parametrize('kind', ['ours', 'official'])
def test_get_model_loads_ours_and_official_files_to_the_same_logits(files, kind):
    paths, image, expected = files
    model = small_model_by_name(pretrained=str(paths[kind]))
    with torch.no_grad():
        torch.testing.assert_close(model(image), expected, rtol=0, atol=0)
    # create_model reads both the same way
    ours = vmamba_mm.create_model(SMALL, num_classes=CLASSES, pretrained=str(paths[kind])).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(image), expected, rtol=0, atol=0)


def _refused(load, path):
    with pytest.raises(CheckpointMismatchError) as error:
        load()
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith(f'{path} does not fit the model')
    # the deeper file's second block of stage 2 is what the model does not have
    extra = [key for key in torch.load(path, weights_only=True)['state_dict']
             if key.startswith('backbone.layers.2.blocks.1.')]
    assert f'{len(extra)} unexpected keys ({extra[0]}, {extra[1]}, {extra[2]}, ...).' in message
    assert 'missing keys' not in message and 'another shape' not in message
    return message


def test_every_mm_path_refuses_a_file_of_another_arch_naming_the_keys(files, tmp_path):
    import mmpretrain
    from mmengine.runner import load_checkpoint
    paths, _, _ = files
    deeper = str(paths['deeper'])
    _refused(lambda: small_model_by_name(pretrained=deeper), deeper)
    model = small_model_by_name()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    _refused(lambda: load_checkpoint(model, deeper, map_location='cpu'), deeper)
    # strict=False, mmengine's default, is not honoured for a VMamba model
    _refused(lambda: load_checkpoint(model, deeper, map_location='cpu', strict=False), deeper)
    image = tmp_path / 'image.png'
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    # inference_model, and the inferencer it builds, given a model and a checkpoint
    _refused(lambda: mmpretrain.inference_model(model, str(image), pretrained=deeper), deeper)
    for key, value in model.state_dict().items():  # nothing was half-loaded
        assert torch.equal(value, before[key]), key
    with pytest.raises(Exception, match='unexpected keys'):
        vmamba_mm.create_model(SMALL, num_classes=CLASSES, pretrained=deeper)


def test_an_official_file_of_another_arch_is_named_as_converted(files, tmp_path):
    from mmengine.runner import load_checkpoint
    paths, _, _ = files
    official = tmp_path / 'deeper_official.pth'
    weights = torch.load(paths['deeper'], weights_only=True)['state_dict']
    torch.save({'model': official_layout(weights)}, official)
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(small_model_by_name(), str(official), map_location='cpu')
    assert str(error.value).startswith(
        f'{official} (an official VMamba file, its keys converted) does not fit the model')
    assert 'unexpected keys (backbone.layers.2.blocks.1.' in str(error.value)


def test_a_head_of_another_size_says_how_to_take_the_backbone_alone(files, tmp_path):
    from mmengine.runner import load_checkpoint
    paths, _, _ = files
    weights = torch.load(paths['ours'], weights_only=True)['state_dict']
    weights['head.fc.weight'] = torch.zeros(7, 128)
    weights['head.fc.bias'] = torch.zeros(7)
    seven = tmp_path / 'seven_classes.pth'
    torch.save({'state_dict': weights}, seven)
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(small_model_by_name(), str(seven), map_location='cpu')
    assert str(error.value) == (
        f'{seven} does not fit the model of this config: 2 keys of another shape (head.fc.weight '
        f'(7, 128) in the checkpoint vs ({CLASSES}, 128) in the model, head.fc.bias (7,) in the '
        f'checkpoint vs ({CLASSES},) in the model). Its backbone fits: to start from the '
        f'backbone alone (another head, fine-tuning), set model.backbone.init_cfg=dict('
        f"type='Pretrained', checkpoint='{seven}', prefix='backbone.') instead.")


def test_models_without_a_vssm_load_as_mmengine_loads_them(tmp_path):
    from mmengine.runner import load_checkpoint
    source = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    torch.save({'state_dict': {'0.weight': source[0].weight.detach()}}, tmp_path / 'part.pth')
    target = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    load_checkpoint(target, str(tmp_path / 'part.pth'), map_location='cpu')  # strict=False
    assert torch.equal(target[0].weight, source[0].weight)
