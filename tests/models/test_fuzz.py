"""Bad input gets a named error, never a crash from deep inside: fuzzed VSSM arch dicts and
--cfg-options values through load_config, and the dtype of the input to a VSSM.

Hypothesis runs derandomized and without its example database: the same examples on every
machine and every run, so CI is reproducible. (It still keeps a cache in .hypothesis/, which
ignores itself for git.)
"""
import math
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmengine.config import Config

import vmamba_mm  # noqa: F401  (registers VSSM and the loops, as the tools do)
from vmamba_mm.config import ConfigError
from vmamba_mm.engine import load_config
from vmamba_mm.models import VSSM
from vmamba_mm.models import ARCH_DEFAULTS, FORWARD_TYPES

from tests.paths import DEMO_CLASSIFICATION as DEMO

FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# -- VSSM arch dicts ---------------------------------------------------------------------------

ARCH_KEYS = sorted({'depths', 'dims'} | set(ARCH_DEFAULTS))
# Numbers are either small or far too large: a value in between (dims=20000) is a valid, huge
# model that would only be slow to build, not an error to find.
small_ints = st.integers(-3, 9)
huge_ints = st.integers(2**31, 2**80)
floats = st.floats(-3, 9) | st.sampled_from([math.nan, math.inf, -math.inf, 1e30, 1e300])
names = st.sampled_from(['v0', 'v2', 'v05_noz', 'v052d', 'v1', 'v3', 'ln', 'LN', 'ln2d', 'auto',
                         'cross', 'bidirectional', 'unidirectional', '', 'x']) | st.text(max_size=4)
scalars = st.none() | st.booleans() | small_ints | huge_ints | floats | names
bad_values = scalars | st.lists(scalars, max_size=5) | st.tuples(small_ints, small_ints)
# Valid settings, each key's own kind of value, so that the fuzz reaches the later checks (and a
# build) rather than stopping at the first key of a random dict.
VALID = {
    'depths': st.lists(st.integers(0, 2), min_size=1, max_size=4),
    'dims': st.integers(1, 12) | st.lists(st.integers(1, 12), min_size=1, max_size=4),
    'patch_size': st.integers(1, 5),
    'ssm_d_state': st.integers(1, 4),
    'ssm_ratio': st.floats(0.05, 3.0),
    'ssm_dt_rank': st.just('auto') | st.integers(1, 4),
    'ssm_conv': st.sampled_from([-1, 0, 1, 3, 5]),
    'ssm_conv_bias': st.booleans(),
    'forward_type': st.sampled_from(sorted(FORWARD_TYPES)),
    'mlp_ratio': st.just(0.0) | st.floats(0.05, 4.0),
    'downsample_version': st.sampled_from(['v1', 'v2', 'v3']),
    'patchembed_version': st.sampled_from(['v1', 'v2']),
    'norm_layer': st.sampled_from(['ln', 'LN', 'ln2d']),
    'drop_path_rate': st.floats(0.0, 0.9),
    'gated': st.none() | st.booleans(),
    'scan_order': st.none() | st.sampled_from(['cross', 'bidirectional', 'unidirectional']),
    'scan_2d': st.booleans(),
    'mixer': st.just('ss2d') | st.fixed_dictionaries(
        {'type': st.just('ss2d')}, optional={'state_size': st.integers(1, 4),
                                             'scan_2d': st.booleans()}),
}
assert sorted(VALID) == ARCH_KEYS


@st.composite
def arch_dicts(draw):
    """A valid-looking arch with a few keys set wrong, dropped or added."""
    optional = draw(st.sets(st.sampled_from(sorted(ARCH_DEFAULTS))))
    arch = {key: draw(VALID[key]) for key in ['depths', 'dims', *sorted(optional)]}
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(['set', 'set', 'drop', 'add']))
        if action == 'set':
            arch[draw(st.sampled_from(ARCH_KEYS))] = draw(bad_values)
        elif action == 'drop':
            arch.pop(draw(st.sampled_from(['depths', 'dims'])), None)
        else:
            arch[draw(st.text(max_size=6) | small_ints)] = draw(bad_values)
    return arch


@settings(FUZZ, max_examples=200)
@given(arch=arch_dicts())
def test_fuzzed_arch_dicts_raise_only_named_errors(arch):
    try:
        backbone = VSSM(arch, out_indices=(0, ))
    except (KeyError, ValueError, TypeError) as exc:
        # The message names an arch key given (or the required one that is missing).
        names = {str(key) for key in arch} | ({'depths', 'dims'} - set(arch))
        assert any(name in str(exc) for name in names), repr(exc)
        return
    # What builds also runs, on the smallest input it says it takes.
    size = backbone.min_input_size
    assert size <= 4 * 2**8, (arch, size)
    with torch.no_grad():
        (out, ) = backbone.eval()(torch.randn(1, 3, size, size))
    assert out.shape[:2] == (1, backbone.dims[0]) and torch.isfinite(out).all()


def test_input_of_another_dtype_is_named():
    backbone = VSSM(dict(depths=[1], dims=8)).eval()
    x = torch.randn(1, 3, 8, 8)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf'input is {dtype} but its weights are '
                           rf'torch.float32; convert the model \(model.to\({dtype}\)\).*'
                           r'torch.autocast'):
            backbone(x.to(dtype))
    with pytest.raises(TypeError, match=r'convert the input \(x.to\(torch.float32\)\)'):
        backbone(x.double())
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert backbone(x.bfloat16())[0].dtype == torch.bfloat16  # mixed precision still runs
    with torch.no_grad():
        assert backbone.to(torch.bfloat16)(x.bfloat16())[0].dtype == torch.bfloat16


def test_a_too_small_input_for_unpadded_downsampling_is_named():
    backbone = VSSM(dict(depths=[1, 1, 1], dims=8, downsample_version='v2')).eval()
    assert backbone.min_input_size == 16
    with pytest.raises(ValueError, match=r'15x16 is smaller than the 16x16 this arch needs'):
        backbone(torch.randn(1, 3, 15, 16))
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 16, 16))[0].shape == (1, 32, 1, 1)


# -- --cfg-options through load_config ------------------------------------------------------


def _paths(node, prefix=''):
    """(dotted key, value) for every key of a config, as --cfg-options spells it (list items by
    index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        path = f'{prefix}{key}'
        yield path, value
        yield from _paths(value, f'{path}.')


# custom_imports would import whatever module a fuzzed string names.
CONFIG_VALUES = {path: value for path, value in _paths(Config.fromfile(DEMO).to_dict())
                 if not path.startswith('custom_imports')}
CONFIG_KEYS = sorted(CONFIG_VALUES)
segment = st.text(string.ascii_lowercase + string.digits + '_', min_size=1, max_size=6)
# What DictAction produces: None, bool, int, float, str, and lists and tuples of them.
option_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                  | st.text(string.printable, max_size=8))
option_values = st.recursive(option_scalars,
                             lambda inner: st.lists(inner, max_size=3)
                             | st.lists(inner, max_size=3).map(tuple), max_leaves=4)


def _like(value):
    """Values of the kind the config has, so that overrides also get past the type check."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, (int, float)):
        return st.integers(-2, 100) | st.floats(-1.0, 100.0)
    if isinstance(value, str):
        return st.sampled_from([value, value.upper(), value[:-1], f'mmdet.{value}', f'.{value}',
                                'os.path', 'auto', '']) | segment
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], dict):
        return st.lists(_like(value[0]), max_size=3).map(type(value))
    return option_values


@st.composite
def cfg_options(draw):
    options = {}
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(['existing', 'existing', 'below', 'any']))
        if kind == 'existing':
            key = draw(st.sampled_from(CONFIG_KEYS))
            options[key] = draw(_like(CONFIG_VALUES[key]) | option_values)
        elif kind == 'below':  # a new key under an existing one
            options[f'{draw(st.sampled_from(CONFIG_KEYS))}.{draw(segment)}'] = draw(option_values)
        else:
            options[draw(st.text(string.ascii_lowercase + '._0123', max_size=10))] = \
                draw(option_values)
    return options


@FUZZ
@given(cfg_options=cfg_options())
def test_fuzzed_cfg_options_raise_only_config_errors(cfg_options):
    try:
        load_config(DEMO, cfg_options)
    except ConfigError as exc:
        assert str(exc) and '\n' not in str(exc), repr(exc)  # one line for `error: ...`
