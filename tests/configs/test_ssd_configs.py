"""configs/ssd: SSD on VMamba-T for ImageNet, its VMamba counterpart's config key for key with
the ssd arch."""
import os

from tests.paths import CONFIG_DIR


def load(relative):
    from mmengine.config import Config
    return Config.fromfile(os.path.join(CONFIG_DIR, relative)).to_dict()


def test_the_recipe_is_the_vmamba_one_with_the_ssd_arch():
    from vmamba_mm.models import ARCH_SETTINGS
    from vmamba_mm.models.backbones.vssm_arch import resolve_arch
    ours, theirs = load('ssd/ssd-tiny_8xb128_in1k.py'), load(
        'vmamba/vmamba-tiny-s1l8_8xb128_in1k.py')
    assert ours['model']['backbone'].pop('arch') == 'ssd-tiny'
    assert theirs['model']['backbone'].pop('arch') == 'tiny-s1l8'
    assert ours == theirs
    # The arch is VMamba-T's layout with the m0 (SSD) forward type and m0's state size.
    ssd, vmamba = ARCH_SETTINGS['ssd-tiny'], ARCH_SETTINGS['tiny-s1l8']
    changed = {key for key in ssd if ssd[key] != vmamba.get(key)}
    assert changed == {'mixer', 'forward_type', 'ssm_d_state'}
    mixer = resolve_arch('ssd-tiny')['mixer']
    assert (mixer['type'], mixer['state_size'], mixer['gated']) == ('ssd', 64, False)
