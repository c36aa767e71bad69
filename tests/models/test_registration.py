"""With the OpenMMLab packages installed, `import vmamba_mm` registers everything, once."""
import importlib.util

import pytest
import torch

pytest.importorskip('mmengine')

from vmamba_mm.models import VSSM  # noqa: E402  (imports vmamba_mm: registers)

SMALL = dict(depths=[1, 1, 1, 1], dims=16, ssm_d_state=1, ssm_ratio=1.0, forward_type='v05_noz',
             mlp_ratio=2.0, downsample_version='v3', patchembed_version='v2', norm_layer='ln2d')


@pytest.mark.parametrize('package', ['mmpretrain', 'mmdet', 'mmseg'])
def test_vssm_is_in_each_task_registry(package):
    registry = pytest.importorskip(f'{package}.registry')
    assert registry.MODELS.get('VSSM') is VSSM


def test_the_rest_is_registered_in_mmengine():
    from mmengine.registry import HOOKS, LOOPS, MODEL_WRAPPERS, TRANSFORMS
    from mmengine.runner.checkpoint import CheckpointLoader

    from vmamba_mm.checkpoint.mmengine_loader import load_from_local_safe
    names = {HOOKS: ['AtomicCheckpointHook', 'StopOnNonFiniteLossHook', 'CheckpointFitHook'],
             LOOPS: ['RawAndEMAValLoop'], MODEL_WRAPPERS: ['CPUDistributedDataParallel'],
             TRANSFORMS: ['RefuseEmptyFiles']}
    for registry, registered in names.items():
        for name in registered:
            assert registry.get(name).__module__.startswith('vmamba_mm.'), name
    assert CheckpointLoader._get_checkpoint_loader('/a/b.pth') is load_from_local_safe
    seg = pytest.importorskip('mmseg.registry')
    assert seg.TRANSFORMS.get('ValidateSegLabels').__module__ == 'vmamba_mm.datasets.transforms'
    assert seg.TRANSFORMS.get('SampleClicks').__module__ == 'vmamba_mm.datasets.clicks'
    for name in ('UMamba2', 'UMamba2Head', 'PromptedEncoderDecoder', 'SoftDiceLoss'):
        assert seg.MODELS.get(name).__module__.startswith('vmamba_mm.models.umamba2.'), name


def test_registering_again_changes_nothing():
    from vmamba_mm.registry import register_all_modules
    first = register_all_modules()
    assert register_all_modules() == first
    assert set(first) == {p for p in ('mmpretrain', 'mmdet', 'mmseg')
                          if importlib.util.find_spec(p) is not None}


def _parent_with(child):
    from mmengine.model import BaseModule

    class Parent(BaseModule):

        def __init__(self):
            super().__init__()
            self.backbone = child

    return Parent()


def test_an_mmengine_parent_initialises_vssm_through_its_init_cfg(tmp_path):
    source = VSSM(SMALL)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               tmp_path / 'ours.pth')
    child = VSSM(SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ours.pth')))
    parent = _parent_with(child)
    parent.init_weights()
    assert child.is_init
    for key, value in source.state_dict().items():
        assert torch.equal(child.state_dict()[key], value), key
    with torch.no_grad():
        child.outnorm3.weight.fill_(2.0)
    parent.init_weights()  # already initialised: not loaded again
    assert torch.equal(child.outnorm3.weight, torch.full((128, ), 2.0))


def test_other_init_cfg_types_go_to_mmengine():
    child = VSSM(SMALL, init_cfg=dict(type='Constant', layer='Linear', val=0.5, bias=0.0))
    _parent_with(child).init_weights()
    linears = [m for m in child.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(torch.all(m.weight == 0.5) for m in linears)
