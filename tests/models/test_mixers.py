"""The token-mixer seam: a mixer is one class registered in MIXERS; VSSM, the arch checks and the
analysis tools reach it only through the TokenMixer protocol.

The toy mixer below is defined and registered in this file alone: that it builds into a VSSM
from an arch dict, trains, counts and has its scan removed proves that a new mixer needs no
edit elsewhere.
"""
import re

import pytest
import torch
import torch.nn as nn

from vmamba_kernels import dispatch
from vmamba_mm.analysis.scan_ablation import remove_scans
from vmamba_mm.models import MIXERS, SS2D, VSSM, TokenMixer, create_model, resolve_arch

TOY_OPERATION = 'test_toy_gain_scan'


def toy_gain_scan(x, gain):
    """The toy 'scan': every token times a per-channel gain (no recurrence at all)."""
    return x * gain


@pytest.fixture(autouse=True, scope='module')
def toy_operation():
    # Registered when the tests run, not when they are collected: the kernel contract's tests
    # take every operation registered at collection for an operation folder's.
    if TOY_OPERATION not in dispatch.operations():
        dispatch.register(TOY_OPERATION, 'torch', toy_gain_scan, devices=('cpu', ),
                          priority=0, description='tensor ops')


@MIXERS.register('test_toy_gain')
class ToyGainMixer(TokenMixer):
    """A linear projection, the toy scan, and a skip term of zero."""

    def __init__(self, channels, *, start_gain=2.0, channel_first=False, scan_backend=None):
        super().__init__(TOY_OPERATION, channel_first=channel_first, scan_backend=scan_backend)
        self.proj = nn.Linear(channels, channels, bias=False)
        self.gain = nn.Parameter(torch.full((channels, ), float(start_gain)))

    @classmethod
    def parameter_estimate(cls, channels, options):
        return float(channels * channels + channels)

    def forward(self, x):
        if self.channel_first:
            x = x.permute(0, 2, 3, 1)
        y = self.run_scan(self.proj(x))
        return y.permute(0, 3, 1, 2) if self.channel_first else y

    def scan(self, x):
        return self.scan_kernel(x, self.gain)

    def skip_term(self, x):
        return torch.zeros_like(x)


def toy_arch(**mixer_options):
    return dict(depths=[1, 1], dims=8, mlp_ratio=0.0, downsample_version='v3',
                patchembed_version='v2', mixer=dict(type='test_toy_gain', **mixer_options))


@pytest.mark.parametrize('channel_first', [False, True])
def test_a_toy_mixer_builds_into_vssm_and_computes_its_own_function(channel_first):
    torch.manual_seed(0)
    backbone = VSSM(toy_arch(start_gain=3.0), out_indices=(0, ),
                    channel_first=channel_first).eval()
    block = backbone.layers[0].blocks[0]
    assert isinstance(block.op, ToyGainMixer) and block.op.mixer_name == 'test_toy_gain'
    assert torch.equal(block.op.gain, torch.full((8, ), 3.0))  # the arch's option reached it
    # The block is x + mixer(LN(x)) (no MLP): with the toy mixer, x + 3 * proj(LN(x)).
    x = torch.randn(2, 8, 5, 6) if channel_first else torch.randn(2, 5, 6, 8)
    with torch.no_grad():
        channels_last = x.permute(0, 2, 3, 1) if channel_first else x
        normed = nn.functional.layer_norm(channels_last, (8, ), block.norm.weight,
                                          block.norm.bias, block.norm.eps)
        expected = channels_last + 3.0 * normed @ block.op.proj.weight.t()
        got = block(x)
    got = got.permute(0, 2, 3, 1) if channel_first else got
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert block.op.scan_backends() == {'cpu': 'torch'}


def test_a_toy_mixer_trains_and_its_scan_is_removable():
    torch.manual_seed(0)
    backbone = VSSM(toy_arch(), out_indices=(1, ))
    (out, ) = backbone(torch.randn(2, 3, 16, 16))
    out.square().mean().backward()
    gains = [block.op.gain.grad for stage in backbone.layers for block in stage.blocks]
    assert all(g is not None and g.abs().sum() > 0 for g in gains)
    # The scan-floor analysis replaces the scan by the skip term (zero here): each block is
    # then the identity, so the output is the norm of the patch embedding and downsample.
    assert remove_scans(backbone) == 2
    captured = []
    handle = backbone.layers[0].blocks[0].op.observe_scan(lambda x, y: captured.append(y))
    with torch.no_grad():
        backbone(torch.randn(1, 3, 16, 16))
    handle.remove()
    assert len(captured) == 1 and not captured[0].any()


def test_the_arch_checks_ask_the_mixer_for_its_size():
    # A toy mixer of 1e6 channels has 1e12 parameters by its own estimate: refused unbuilt.
    with pytest.raises(ValueError, match='parameters'):
        resolve_arch(dict(toy_arch(), dims=[10**6, 10**6]))


def test_unknown_mixer_and_option_are_named():
    with pytest.raises(ValueError, match=r"Unknown mixer 'nope'.*'ss2d'"):
        VSSM(dict(depths=[1], dims=8, mixer='nope'))
    with pytest.raises(KeyError, match=r"'colour'.*'ss2d'.*'state_size'"):
        VSSM(dict(depths=[1], dims=8, mixer=dict(type='ss2d', colour=1)))
    with pytest.raises(KeyError, match=r"no 'type'"):
        VSSM(dict(depths=[1], dims=8, mixer=dict(state_size=2)))
    with pytest.raises(TypeError, match='mixer must be a name'):
        VSSM(dict(depths=[1], dims=8, mixer=3))
    for option, value, error in (('state_size', 0, ValueError), ('state_size', 1.5, TypeError),
                                 ('expand_ratio', -1.0, ValueError), ('conv_size', 4, ValueError),
                                 ('scan_2d', 'yes', TypeError), ('scan_order', 'spiral',
                                                                 ValueError)):
        with pytest.raises(error, match=rf"mixer 'ss2d' option {option} must be"):
            VSSM(dict(depths=[1], dims=8, mixer={'type': 'ss2d', option: value}))


def test_ss2d_options_come_from_the_arch_and_a_mixer_dict_wins():
    settings = resolve_arch('2dvmamba-tiny')
    assert settings['mixer']['type'] == 'ss2d' and settings['mixer']['scan_2d'] is True
    # The 2D scan as a mixer option builds the same model as the arch key.
    arch = dict(depths=[1, 1], dims=8)
    by_key = VSSM(dict(arch, scan_2d=True))
    by_option = VSSM(dict(arch, mixer=dict(type='ss2d', scan_2d=True, state_size=3)))
    assert by_key.layers[0].blocks[0].op.scan_operation == 'cross_selective_scan_2d'
    assert by_option.layers[0].blocks[0].op.scan_operation == 'cross_selective_scan_2d'
    assert by_option.layers[0].blocks[0].op.state_size == 3
    assert by_key.layers[0].blocks[0].op.state_size == 16  # the arch's ssm_d_state default


@pytest.mark.parametrize('mixer, instead', [('ssd', 'scans 1D routes'),
                                             ('v2m', 'has its own 2D scan')])
def test_ssd_and_v2m_take_the_arch_keys_of_their_options_and_refuse_scan_2d(mixer, instead):
    arch = dict(depths=[1], dims=8, mixer=mixer, ssm_d_state=3, ssm_ratio=1.0, ssm_dt_rank=2,
                ssm_conv=5, ssm_conv_bias=False, gated=False, scan_order='bidirectional')
    expected = dict(type=mixer, state_size=3, expand_ratio=1.0, dt_rank=2, conv_size=5,
                    conv_bias=False, gated=False)
    if mixer == 'ssd':  # V2M scans its four corners, with no scan_order option
        expected['scan_order'] = 'bidirectional'
    assert resolve_arch(arch)['mixer'] == expected
    message = (f"VSSM arch scan_2d=True selects 2DMamba's scan inside mixer 'ss2d'; mixer "
               f"'{mixer}' {instead}: leave scan_2d False.")
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_arch(dict(arch, scan_2d=True))


def test_the_scan_choice_is_read_overridden_and_pinned_through_the_protocol():
    model = create_model(dict(depths=[1], dims=8), num_classes=3, scan_backend='torch').eval()
    mixer = next(m for m in model.modules() if isinstance(m, SS2D))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    assert mixer.scan_backend == 'torch' and mixer.scan_backends() == {'cpu': 'torch'}
    mixer.set_scan_backend('reference')
    assert mixer.scan_backends() == {}  # chosen again at the next call
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert mixer.scan_backends() == {'cpu': 'reference'}
    with mixer.scan_backend_pinned('cpu', 'torch'):
        assert mixer.scan_backends() == {'cpu': 'torch'}
    assert mixer.scan_backends() == {'cpu': 'reference'}
