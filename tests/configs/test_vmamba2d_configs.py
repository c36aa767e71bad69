"""configs/vmamba2d: 2DVMamba-T/S for ImageNet and UperNet, built on the real mm stack.

Each config is its VMamba counterpart with the 2D-scan arch: the same recipe key for key, and the
released parameter counts (2DMamba's scan adds no parameter).
"""
import os

import pytest

from tests.config_models import build_model
from tests.official import CLASSIFIERS, DOWNSTREAM, VMAMBA_2D
from tests.paths import CONFIG_DIR

SIZES = {'2dvmamba-tiny': 'tiny', '2dvmamba-small': 'small'}


def load(relative):
    from mmengine.config import Config
    return Config.fromfile(os.path.join(CONFIG_DIR, relative))


def pairs():
    """(2D config, its VMamba counterpart, arch, kind) for every shipped 2D config."""
    for arch, (vmamba_arch, _) in VMAMBA_2D.items():
        size = SIZES[arch]
        yield (f'vmamba2d/vmamba2d-{size}_8xb128_in1k.py',
               f'vmamba/vmamba-{vmamba_arch}_8xb128_in1k.py', arch, 'classification')
        yield (f'vmamba2d/upernet_vmamba2d-{size}_8xb2-160k_ade20k-512x512.py',
               f'upernet/upernet_vmamba-{vmamba_arch}_8xb2-160k_ade20k-512x512.py', arch,
               'segmentation')


PAIRS = list(pairs())


def test_the_folder_holds_exactly_these_configs():
    shipped = sorted(name for name in os.listdir(os.path.join(CONFIG_DIR, 'vmamba2d'))
                     if name.endswith('.py'))
    assert shipped == sorted(os.path.basename(p[0]) for p in PAIRS)


@pytest.mark.parametrize('config, counterpart, arch, kind', PAIRS,
                         ids=[os.path.basename(p[0]) for p in PAIRS])
def test_the_recipe_is_the_vmamba_one_with_the_2d_arch(config, counterpart, arch, kind):
    ours, theirs = load(config).to_dict(), load(counterpart).to_dict()
    assert ours['model']['backbone']['arch'] == arch
    assert theirs['model']['backbone']['arch'] == VMAMBA_2D[arch][0]
    if kind == 'segmentation':
        checkpoint = f'checkpoints/vmamba2d-{SIZES[arch]}_in1k.pth'
        assert ours['model']['backbone']['init_cfg']['checkpoint'] == checkpoint
        assert ours.pop('backbone_checkpoint') == checkpoint
        theirs.pop('backbone_checkpoint')
        for cfg in (ours, theirs):
            cfg['model']['backbone'].pop('init_cfg')
    for cfg in (ours, theirs):
        cfg['model']['backbone'].pop('arch')
    assert ours == theirs


@pytest.mark.parametrize('config, counterpart, arch, kind', PAIRS,
                         ids=[os.path.basename(p[0]) for p in PAIRS])
def test_the_model_builds_with_the_released_parameter_count(config, counterpart, arch, kind):
    import vmamba_mm  # noqa: F401  (registers VSSM)
    model = build_model(load(config))
    vmamba_arch = VMAMBA_2D[arch][0]
    if kind == 'classification':
        expected = CLASSIFIERS[vmamba_arch].params
    else:
        expected = DOWNSTREAM[counterpart[:-len('.py')]].params
    assert sum(p.numel() for p in model.parameters()) == expected
    scans = [m for m in model.backbone.modules() if type(m).__name__ == 'SS2D']
    assert scans and all(m.scan_operation == 'cross_selective_scan_2d' for m in scans)
