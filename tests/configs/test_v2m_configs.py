"""configs/v2m: V2M on VMamba-T and VMamba-S for ImageNet, each its VMamba counterpart's config
key for key with the v2m arch."""
import os

import pytest

from tests.paths import CONFIG_DIR

PAIRS = [('v2m-tiny_8xb128_in1k.py', 'vmamba-tiny-s1l8_8xb128_in1k.py', 'v2m-tiny', 'tiny-s1l8'),
         ('v2m-small_8xb128_in1k.py', 'vmamba-small-s2l15_8xb128_in1k.py', 'v2m-small',
          'small-s2l15')]


def load(relative):
    from mmengine.config import Config
    return Config.fromfile(os.path.join(CONFIG_DIR, relative)).to_dict()


@pytest.mark.parametrize('config, counterpart, arch, vmamba_arch', PAIRS,
                         ids=[pair[0] for pair in PAIRS])
def test_the_recipe_is_the_vmamba_one_with_the_v2m_arch(config, counterpart, arch, vmamba_arch):
    from vmamba_mm.models import ARCH_SETTINGS
    ours, theirs = load(f'v2m/{config}'), load(f'vmamba/{counterpart}')
    assert ours['model']['backbone'].pop('arch') == arch
    assert theirs['model']['backbone'].pop('arch') == vmamba_arch
    assert ours == theirs
    # The arch is its VMamba layout with the v2m mixer and its own state size and delta rank.
    changed = {key for key in ARCH_SETTINGS[arch]
               if ARCH_SETTINGS[arch][key] != ARCH_SETTINGS[vmamba_arch].get(key)}
    assert changed == {'mixer', 'ssm_d_state', 'ssm_dt_rank'}
    assert ARCH_SETTINGS[arch]['mixer'] == 'v2m'
