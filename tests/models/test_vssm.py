"""The VSSM backbone: official parameter counts and keys, outputs, options and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from vmamba_kernels import selective_scan
from vmamba_mm.models import ARCH_SETTINGS, VSSM
from vmamba_mm.models.mixers import SS2D

from tests.official import CLASSIFIERS, VMAMBA_2D


def classifier_params(backbone, num_classes=1000):
    # The official classifier is outnorm3 (inside the backbone) + avgpool + Linear.
    return sum(p.numel() for p in backbone.parameters()) + backbone.dims[-1] * num_classes + \
        num_classes


def test_all_released_archs_are_known():
    # The released archs are the SS2D ones; other scan families (mixer != 'ss2d') add their own.
    ss2d_archs = [name for name, arch in ARCH_SETTINGS.items()
                  if arch.get('mixer', 'ss2d') == 'ss2d']
    assert sorted(ss2d_archs) == sorted([*CLASSIFIERS, *VMAMBA_2D])


@pytest.mark.parametrize('arch', [*sorted(CLASSIFIERS), *VMAMBA_2D])
def test_parameter_count_and_every_official_key(arch, official_keys):
    # A 2DVMamba arch has its VMamba arch's parameters and keys.
    released = CLASSIFIERS[VMAMBA_2D[arch][0] if arch in VMAMBA_2D else arch]
    official_name, count = released.constructor, released.params
    backbone = VSSM(arch, out_indices=(3, ))
    assert classifier_params(backbone) == count == official_keys[official_name]['params']
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    homes = {}
    for key, shape in official_keys[official_name]['state_dict'].items():
        if key.startswith('classifier.head.'):
            assert tuple(shape) == ((1000, backbone.dims[-1]) if key.endswith('weight') else
                                    (1000, ))
            continue
        home = key.replace('classifier.norm.', 'outnorm3.')
        assert ours.get(home) == tuple(shape), f'{key} {shape} has no home (ours: {ours.get(home)})'
        homes[home] = key
    assert set(homes) == set(ours), f'keys of ours unknown to the official model: ' \
        f'{sorted(set(ours) - set(homes))}'


@pytest.mark.parametrize('arch', ['tiny-s1l8', 'vanilla-tiny'])
@pytest.mark.parametrize('size', [(64, 64), (37, 53), (4, 4), (100, 33)])
def test_outputs_for_odd_sizes_and_all_stages(arch, size):
    torch.manual_seed(0)
    backbone = VSSM(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(2, 3, *size))
    # The official v1 patch embedding is a stride-4 conv (floor); every other step rounds up.
    first = math.floor if ARCH_SETTINGS[arch]['patchembed_version'] == 'v1' else math.ceil
    height, width = first(size[0] / 4), first(size[1] / 4)
    assert len(outs) == 4
    for stage, out in enumerate(outs):
        if stage:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        assert out.shape == (2, backbone.dims[stage], height, width)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('out_indices, expected', [((3, ), [3]), ((1, 3), [1, 3]), ((-1, ), [3]),
                                                   ((0, 2), [0, 2])])
def test_out_indices(out_indices, expected):
    backbone = VSSM('tiny-s1l8', out_indices=out_indices).eval()
    assert list(backbone.out_indices) == expected
    assert backbone.out_channels == [backbone.dims[i] for i in expected]
    assert [k for k in backbone.state_dict() if k.startswith('outnorm')] == \
        [f'outnorm{i}.{p}' for i in expected for p in ('weight', 'bias')]
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == backbone.out_channels


def test_layouts_compute_the_same_function():
    torch.manual_seed(0)
    for arch in ['tiny-s1l8', 'vanilla-tiny']:
        first = VSSM(arch, out_indices=(0, 3), channel_first=True).eval()
        last = VSSM(arch, out_indices=(0, 3), channel_first=False).eval()
        last.load_state_dict(first.state_dict())
        x = torch.randn(1, 3, 40, 56)
        with torch.no_grad():
            for a, b in zip(first(x), last(x)):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = VSSM('tiny-s1l8', drop_path_rate=0.0)
    checkpointed = VSSM('tiny-s1l8', drop_path_rate=0.0, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    for model in (plain, checkpointed):
        model(x)[0].square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_drop_path_rates_and_training_randomness():
    backbone = VSSM('tiny-s1l8', drop_path_rate=0.3)
    rates = [block.drop_path.drop_prob for stage in backbone.layers for block in stage.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)
    assert VSSM('vanilla-base').layers[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.6)
    x = torch.randn(2, 3, 32, 32)
    backbone.train()
    assert not torch.equal(backbone(x)[0], backbone(x)[0])
    backbone.eval()
    assert torch.equal(backbone(x)[0], backbone(x)[0])


def test_frozen_stages_and_norm_eval():
    backbone = VSSM('tiny-s1l8', out_indices=(0, 1, 2, 3), frozen_stages=2, norm_eval=True)
    backbone.train()
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert all(n.startswith(('patch_embed.', 'layers.0.', 'layers.1.', 'outnorm0.', 'outnorm1.'))
               for n in frozen)
    assert any(n.startswith('layers.1.') for n in frozen)
    assert all(p.requires_grad for n, p in backbone.named_parameters()
               if n.startswith(('layers.2.', 'outnorm2.')))
    assert not backbone.layers[0].training and backbone.layers[2].training
    # Frozen parts receive no gradient.
    backbone(torch.randn(1, 3, 32, 32))[-1].sum().backward()
    assert backbone.patch_embed[0].weight.grad is None


def test_arch_dict_and_forward_types():
    custom = dict(depths=[1, 1], dims=16, ssm_d_state=2, ssm_ratio=1.0, forward_type='v052d',
                  mlp_ratio=2.0, downsample_version='v2', patchembed_version='v1',
                  norm_layer='ln')
    backbone = VSSM(custom, out_indices=(0, 1))
    assert backbone.dims == [16, 32]
    block = backbone.layers[0].blocks[0]
    assert block.op.gated and block.op.scan_order == 'bidirectional'
    assert not backbone.channel_first
    outs = backbone(torch.randn(1, 3, 16, 16))
    assert [o.shape for o in outs] == [(1, 16, 4, 4), (1, 32, 2, 2)]
    assert VSSM(dict(custom, forward_type='v3_noz')).layers[0].blocks[0].op.gated is False
    # Keys left out take the official constructor's defaults (N = 16, forward_type 'v2', 'LN').
    defaults = VSSM(dict(depths=[1, 1], dims=8, norm_layer='LN')).arch_settings
    assert (defaults['ssm_d_state'], defaults['forward_type'], defaults['gated'],
            defaults['norm_layer'], defaults['downsample_version']) == (16, 'v2', True, 'ln', 'v2')
    assert VSSM(dict(custom, scan_order='unidirectional')).layers[0].blocks[0].op.scan_order == \
        'unidirectional'


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="'tiny-s9'"):
        VSSM('tiny-s9')
    with pytest.raises(KeyError, match=r"\['ssm_dstate'\]"):
        VSSM(dict(depths=[1], dims=8, ssm_dstate=4))
    with pytest.raises(ValueError, match="forward_type 'v9'"):
        VSSM(dict(depths=[1], dims=8, forward_type='v9'))
    with pytest.raises(ValueError, match='out_indices'):
        VSSM('tiny-s1l8', out_indices=(4, ))
    backbone = VSSM('tiny-s1l8')
    with pytest.raises(ValueError, match='smaller than one 4x4 patch'):
        backbone(torch.randn(1, 3, 3, 64))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        backbone(torch.randn(1, 1, 64, 64))


def _route_order(height, width, k):
    rows = [r * width + c for r in range(height) for c in range(width)]
    cols = [r * width + c for c in range(width) for r in range(height)]
    return [rows, cols, rows[::-1], cols[::-1]][k]


@pytest.mark.parametrize('gated', [True, False])
def test_ss2d_matches_a_direction_by_direction_oracle(gated):
    """SS2D against the published formula written route by route with the sequential scan."""
    torch.manual_seed(0)
    op = SS2D(8, state_size=3, expand_ratio=1.5, conv_bias=gated, gated=gated,
              channel_first=False).double()
    with torch.no_grad():
        for p in op.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)  # (B, H, W, C)
    height, width = 3, 5
    with torch.no_grad():
        xz = F.linear(x, op.in_proj.weight)
        inner = op.Ds.numel() // 4
        xi, z = (xz[..., :inner], xz[..., inner:]) if gated else (xz, None)
        xi = F.silu(op.conv2d(xi.permute(0, 3, 1, 2))).flatten(2)  # (B, D, L) row-major
        merged = torch.zeros_like(xi)
        for k in range(4):
            order = torch.tensor(_route_order(height, width, k))
            seq = xi[:, :, order]
            proj = torch.einsum('cd,bdl->bcl', op.x_proj_weight[k], seq)
            dt, Bk, Ck = proj.split([op.dt_rank, 3, 3], dim=1)
            dt = torch.einsum('dr,brl->bdl', op.dt_projs_weight[k], dt)
            rows = slice(k * inner, (k + 1) * inner)
            y = selective_scan(seq, dt, -torch.exp(op.A_logs[rows]), Bk, Ck, D=op.Ds[rows],
                               delta_bias=op.dt_projs_bias[k], delta_softplus=True,
                               backend='reference').double()
            merged[:, :, order] += y
        y = F.layer_norm(merged.transpose(1, 2), (inner, ), op.out_norm.weight,
                         op.out_norm.bias).view(2, height, width, inner)
        if gated:
            y = y * F.silu(z)
        expected = F.linear(y, op.out_proj.weight)
        torch.testing.assert_close(op(x), expected, rtol=1e-5, atol=1e-6)


def test_linear_layers_on_onednn_match_nn_linear_and_follow_their_weights():
    # The channels-last layers' CPU inference path (a oneDNN copy of the weight) against
    # F.linear, on 2D and 4D inputs, with and without a bias, and after the weight changes.
    import torch.nn.functional as F

    from vmamba_mm.models.layers import Linear
    gen = torch.Generator().manual_seed(0)
    for bias in (True, False):
        layer = Linear(24, 40, bias=bias)
        for shape in ((7, 24), (2, 5, 3, 24)):
            x = torch.randn(*shape, generator=gen)
            with torch.no_grad():
                torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias),
                                           rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            layer.weight.mul_(-2.0)
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias),
                                       rtol=1e-5, atol=1e-5)
        assert layer(x).requires_grad  # with autograd: nn.Linear


def test_mlp_gelu_as_a_onednn_post_op_matches_the_two_steps():
    # CPU inference runs fc1's GELU as oneDNN's post-op; it must be the exact (erf) GELU.
    import torch.nn.functional as F

    from vmamba_mm.models.layers import Mlp
    mlp = Mlp(24, 96, channel_first=False)
    x = torch.randn(2, 5, 3, 24, generator=torch.Generator().manual_seed(0)) * 3
    by_hand = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight,
                       mlp.fc2.bias)
    with torch.no_grad():
        assert mlp.fc1.onednn_applies(x)
        torch.testing.assert_close(mlp(x), by_hand, rtol=1e-5, atol=1e-5)


def test_onednn_weight_copies_can_be_turned_off_and_back_on():
    import torch.nn.functional as F

    from vmamba_mm.models import layers
    layer = layers.Linear(24, 40)
    x = torch.randn(7, 24, generator=torch.Generator().manual_seed(0))
    expected = F.linear(x, layer.weight, layer.bias)
    try:
        with torch.no_grad():
            layer(x)
            assert layer in layers._ONEDNN_WEIGHTS or not layers._ONEDNN_LINEAR
            layers.use_onednn_weight_copies(False)
            assert not layer.onednn_applies(x) and layer not in layers._ONEDNN_WEIGHTS
            torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
            assert layer not in layers._ONEDNN_WEIGHTS  # no copy made while off
            layers.use_onednn_weight_copies(True)
            assert layer.onednn_applies(x) == layers._ONEDNN_LINEAR
            torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    finally:
        layers.use_onednn_weight_copies(True)


def test_linear_layers_are_counted_on_the_cpu_without_autograd():
    from torch.utils.flop_counter import FlopCounterMode

    from vmamba_mm.models.layers import Linear
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        Linear(24, 40)(torch.randn(7, 24))
    assert counter.get_total_flops() == 2 * 7 * 24 * 40


def test_stem_and_downsampling_convs_on_onednn_match_nn_conv2d():
    import torch.nn.functional as F

    from vmamba_mm.models.layers import Conv2d
    gen = torch.Generator().manual_seed(0)
    for conv, shapes in ((Conv2d(8, 16, 3, stride=2, padding=1), ((1, 8, 9, 11), (2, 8, 6, 6))),
                         (Conv2d(3, 8, 4, stride=4), ((1, 3, 16, 12), ))):
        for shape in shapes:
            x = torch.randn(*shape, generator=gen)
            with torch.no_grad():
                torch.testing.assert_close(
                    conv(x), F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding),
                    rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            conv.weight.mul_(-2.0)
            torch.testing.assert_close(
                conv(x), F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding),
                rtol=1e-5, atol=1e-5)
