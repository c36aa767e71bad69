"""U-Mamba2-style segmentation: Mamba2Layer against a plain-tensor reference of the block, its
constraint errors, mixed precision, the click prompt, the soft Dice loss, and the segmentor's
loss and predict steps."""
import math

import pytest
import torch

from vmamba_mm.models.umamba2 import ClickMaps, ClickPrompt, Mamba2Layer, pad_clicks


def plain_mamba2(layer, feature_map):
    """The Mamba2 block written out with plain tensor operations on the layer's weights and the
    SSD scan's sequential reference: an oracle independent of the layer's code path."""
    from vmamba_kernels import ssd_scan
    batch, channels = feature_map.shape[:2]
    tokens = feature_map.reshape(batch, channels, -1).permute(0, 2, 1)
    mean = tokens.mean(-1, keepdim=True)
    variance = ((tokens - mean) ** 2).mean(-1, keepdim=True)
    tokens = (tokens - mean) / torch.sqrt(variance + layer.norm.eps) * layer.norm.weight \
        + layer.norm.bias
    projected = tokens @ layer.in_proj.weight.T
    inner, state, heads = layer.inner, layer.groups * layer.d_state, layer.heads
    z = projected[..., :inner]
    xbc = projected[..., inner:2 * inner + 2 * state]
    dt = projected[..., 2 * inner + 2 * state:]
    # causal depthwise convolution: output t sees inputs t - width + 1 .. t
    weight, width = layer.conv1d.weight[:, 0], layer.conv1d.weight.shape[-1]
    length = xbc.shape[1]
    convolved = layer.conv1d.bias.expand_as(xbc).clone()
    for tap in range(width):
        shift = width - 1 - tap
        shifted = torch.cat([xbc.new_zeros(batch, shift, xbc.shape[-1]),
                             xbc[:, :length - shift]], dim=1)
        convolved = convolved + shifted * weight[:, tap]
    xbc = convolved * torch.sigmoid(convolved)
    x, b, c = xbc[..., :inner], xbc[..., inner:inner + state], xbc[..., inner + state:]
    y = ssd_scan(x.reshape(batch, length, heads, layer.headdim), dt, -torch.exp(layer.A_log),
                 b.reshape(batch, length, layer.groups, layer.d_state),
                 c.reshape(batch, length, layer.groups, layer.d_state), D=layer.D,
                 dt_bias=layer.dt_bias, dt_softplus=True, backend='reference')
    gated = y.reshape(batch, length, inner) * (z * torch.sigmoid(z))
    grouped = gated.reshape(batch, length, layer.groups, -1)
    rms = torch.sqrt((grouped ** 2).mean(-1, keepdim=True) + layer.gate_norm.eps)
    normed = (grouped / rms).reshape(batch, length, inner) * layer.gate_norm.weight
    out = normed @ layer.out_proj.weight.T
    return out.permute(0, 2, 1).reshape(feature_map.shape)


@pytest.mark.parametrize('shape, groups', [((2, 16, 3, 5), 1), ((1, 16, 2, 3, 4), 2)],
                         ids=['2d', '3d-two-groups'])
@pytest.mark.parametrize('backend', [None, 'torch'], ids=['automatic', 'torch'])
def test_mamba2_layer_matches_the_plain_block(shape, groups, backend):
    torch.manual_seed(0)
    layer = Mamba2Layer(16, d_state=8, headdim=8, groups=groups, chunk_size=4, backend=backend)
    feature_map = torch.randn(shape, requires_grad=True)
    expected_map = feature_map.detach().clone().requires_grad_()
    out = layer(feature_map)
    expected = plain_mamba2(layer, expected_map)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [feature_map, *layer.parameters()])
    expected_grads = torch.autograd.grad((expected * weights).sum(),
                                         [expected_map, *layer.parameters()])
    names = ['input'] + [name for name, _ in layer.named_parameters()]
    for name, grad, expected_grad in zip(names, grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=5e-5, rtol=1e-4, msg=name)


def test_mamba2_layer_names_its_constraints():
    with pytest.raises(ValueError, match=r'expand \* channels = 2 \* 48 = 96 does not divide '
                                         r'into heads of headdim=80; use a headdim that divides '
                                         r'96'):
        Mamba2Layer(48)
    with pytest.raises(ValueError, match='6 heads .* do not divide into groups=4'):
        Mamba2Layer(48, headdim=16, groups=4)
    layer = Mamba2Layer(16, headdim=8)
    with pytest.raises(ValueError, match=r'input of shape \(1, 8, 4, 4\); expected '
                                         r'\(batch, 16, \*spatial\)'):
        layer(torch.zeros(1, 8, 4, 4))


def test_mamba2_layer_stays_finite_and_close_under_bf16_autocast():
    torch.manual_seed(0)
    layer = Mamba2Layer(32, headdim=16, chunk_size=8)
    # large activations and long decays: where half-precision segment sums would overflow
    feature_map = 20 * torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        layer.dt_bias.fill_(3.0)
        reference = layer(feature_map)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            mixed = layer(feature_map)
    assert mixed.dtype == torch.bfloat16
    assert torch.isfinite(mixed).all()
    relative = (mixed.float() - reference).norm() / reference.norm()
    assert relative < 0.03, relative


def test_click_prompt_starts_as_the_identity_and_reads_clicks_once_trained():
    torch.manual_seed(0)
    prompt = ClickPrompt(16, num_classes=3, num_heads=4)
    feature_map = torch.randn(2, 16, 4, 6)
    clicks, valid = pad_clicks([torch.tensor([[5.0, 7.0, 1.0], [30.0, 2.0, 2.0]]), None],
                               feature_map.device)
    assert valid.tolist() == [[True, True], [False, False]]
    torch.testing.assert_close(prompt(feature_map, clicks, valid, (16, 32)), feature_map)
    torch.nn.init.normal_(prompt.out_proj.weight)
    prompted = prompt(feature_map, clicks, valid, (16, 32))
    unprompted = prompt(feature_map, *pad_clicks([None, None], 'cpu'), (16, 32))
    assert not torch.allclose(prompted[0], unprompted[0])
    # the second sample has no clicks in both: it attends to the "no click" token alone
    torch.testing.assert_close(prompted[1], unprompted[1])
    moved = clicks.clone()
    moved[0, 0, :2] = torch.tensor([20.0, 3.0])
    assert not torch.allclose(prompt(feature_map, moved, valid, (16, 32))[0], prompted[0])
    with pytest.raises(ValueError, match='click label 3 is not a class of 0..2'):
        prompt(feature_map, *pad_clicks([torch.tensor([[1.0, 1.0, 3.0]]), None], 'cpu'),
               (16, 32))


def test_the_flop_counter_counts_the_layer_with_the_ssd_rule():
    from vmamba_kernels.ssd_scan import ssd_scan_macs

    from vmamba_mm.analysis.flops import count_macs
    layer = Mamba2Layer(16, d_state=8, headdim=8, chunk_size=4).to('meta')
    feature_map = torch.empty(2, 16, 3, 5, device='meta')
    macs, _ = count_macs(layer, lambda: layer(feature_map), 'meta')
    assert not macs.uncounted_operators
    length, inner, conv_width, taps = 15, 32, 32 + 2 * 8, 4
    projections = 2 * length * (16 * (inner + conv_width + 4) + inner * 16)
    # The counter's rules: LayerNorm 5 per element; the causal convolution one multiply-add per
    # tap at each of its L + 3 padded outputs; SSD the chunked form without the D skip (the
    # element-wise part, as torch's counter sees the torch form).
    expected = (projections + 5 * 2 * length * 16 + 2 * (length + taps - 1) * conv_width * taps
                + ssd_scan_macs(2, length, 4, 8, 8, 1, 4, with_skip=False))
    assert macs.by_operator['vmamba.ssd_scan_cpp'] == ssd_scan_macs(2, length, 4, 8, 8, 1, 4,
                                                                     with_skip=False)
    assert macs.total == expected, (macs.total, expected, macs.by_operator)


def test_a_click_acts_near_itself_first():
    torch.manual_seed(0)
    prompt = ClickPrompt(16, num_classes=3, num_heads=4)
    torch.nn.init.normal_(prompt.out_proj.weight)
    feature_map = torch.randn(1, 16, 8, 8)
    # a click at the centre of the map's top-left cell (the image is 32 x 32: cells of 4 pixels)
    clicks, valid = pad_clicks([torch.tensor([[1.5, 1.5, 2.0]])], 'cpu')
    change = (prompt(feature_map, clicks, valid, (32, 32)) -
              prompt(feature_map, *pad_clicks([None], 'cpu'), (32, 32))).norm(dim=1)[0]
    # the initial reach is 0.1 of the image: the far corner, 0.99 away, hardly sees the click
    assert change[0, 0] > 20 * change[7, 7], change


def test_click_maps_are_gaussians_of_the_distance_per_class():
    maps = ClickMaps(3, radius=2.0)
    # sample 0: class-1 clicks at (x 5, y 7) and (x 6, y 7), a class-2 click at (x 10, y 2);
    # sample 1: none
    clicks, valid = pad_clicks([torch.tensor([[5.0, 7.0, 1.0], [6.0, 7.0, 1.0],
                                              [10.0, 2.0, 2.0]]), None], 'cpu')
    out = maps(clicks, valid, (12, 16))
    assert out.shape == (2, 3, 12, 16)
    # hand-computed: at (x 3, y 8) the nearer class-1 click is (5, 7), d^2 = 4 + 1 = 5
    assert out[0, 1, 8, 3] == pytest.approx(math.exp(-5 / 8))
    assert out[0, 1, 7, 5] == out[0, 1, 7, 6] == 1.0
    assert out[0, 2, 2, 10] == 1.0 and out[0, 2, 4, 10] == pytest.approx(math.exp(-4 / 8))
    assert not out[0, 0].any() and not out[1].any()  # no class-0 clicks; padding draws nothing
    with pytest.raises(ValueError, match='ClickMaps: click label 3 is not a class of 0..2'):
        maps(*pad_clicks([torch.tensor([[1.0, 1.0, 3.0]])], 'cpu'), (4, 4))
    with pytest.raises(ValueError, match='radius=0 must be a positive number of pixels'):
        ClickMaps(3, radius=0)
