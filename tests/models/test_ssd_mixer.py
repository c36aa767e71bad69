"""The SSD mixer (VMamba's m0: SS2D's four routes scanned by Mamba2's SSD): its scan against the
four routes built here by hand and scanned one by one with the sequential ``ssd_scan``
reference; the ssd-tiny parameter count by hand; the FLOP count against the SSD rule; export,
fullgraph compile, training; option errors."""
import pytest
import torch

from tests.training_steps import losses_of_a_few_steps
from vmamba_kernels import ssd_scan
from vmamba_kernels.ssd_scan.flops import ssd_scan_macs
from vmamba_mm.analysis.flops import count_macs
from vmamba_mm.models import VSSM, create_model
from vmamba_mm.models.mixers import SS2D, SSD


def random_mixer(channel_first, gated=False, state_size=5):
    torch.manual_seed(0)
    mixer = SSD(12, state_size=state_size, expand_ratio=1.0, dt_rank=3, gated=gated,
                chunk_size=4, channel_first=channel_first)
    with torch.no_grad():  # away from the initial values, so that every term shows
        mixer.A_logs.normal_(0, 0.5)
        mixer.Ds.normal_()
        mixer.dt_projs_bias.normal_(0, 0.5)
    return mixer


def routes_by_hand(x):
    """(B, D, H, W) -> the four cross-scan routes as (B, L, D) sequences, each with the map
    back: row-major, column-major, and the two reversed."""
    batch, dim, height, width = x.shape
    rows = x.flatten(2).transpose(1, 2)
    columns = x.transpose(2, 3).flatten(2).transpose(1, 2)

    def from_rows(y):
        return y.transpose(1, 2).reshape(batch, dim, height, width)

    def from_columns(y):
        return y.transpose(1, 2).reshape(batch, dim, width, height).transpose(2, 3)

    return [(rows, from_rows), (columns, from_columns),
            (rows.flip(1), lambda y: from_rows(y.flip(1))),
            (columns.flip(1), lambda y: from_columns(y.flip(1)))]


def per_route_reference(mixer, x):
    """The mixer's scan recomputed route by route with ``ssd_scan(backend='reference')``, each
    route's R heads one group of B and C; the four results summed in pixel order."""
    heads, state, head_dim = mixer.heads_per_route, mixer.state_size, mixer.head_dim
    out = torch.zeros_like(x, dtype=torch.float32)
    for route, (u, back) in enumerate(routes_by_hand(x)):
        projected = u @ mixer.x_proj_weight[route].t()
        dt, B, C = projected.split([heads, state, state], dim=-1)
        y = ssd_scan(u.unflatten(-1, (heads, head_dim)), dt, -mixer.A_logs[route].exp(),
                     B[:, :, None], C[:, :, None], D=mixer.Ds[route],
                     dt_bias=mixer.dt_projs_bias[route], dt_softplus=True, backend='reference')
        out += back(y.flatten(2))
    return out


def scan_in_channel_first(mixer, x):
    y = mixer.scan(x)
    return y if mixer.channel_first else y.permute(0, 3, 1, 2)


@pytest.mark.parametrize('channel_first', [True, False])
def test_scan_matches_the_routes_scanned_one_by_one(channel_first):
    mixer = random_mixer(channel_first)
    x = torch.randn(2, 12, 5, 7)  # odd, non-square; 35 steps: 8 chunks of 4, the last cut
    with torch.no_grad():
        torch.testing.assert_close(scan_in_channel_first(mixer, x),
                                   per_route_reference(mixer, x), rtol=1e-4, atol=1e-5)
    assert mixer.scan_backends() == {'cpu': 'cpp'}


def test_gradients_match_the_reference_and_reach_every_parameter():
    mixer = random_mixer(channel_first=True)
    x = torch.randn(1, 12, 3, 5, requires_grad=True)
    weights = torch.randn(1, 12, 3, 5)
    (mixer.scan(x) * weights).sum().backward()
    got = {name: p.grad.clone() for name, p in mixer.named_parameters() if p.grad is not None}
    got_x = x.grad.clone()
    mixer.zero_grad()
    x.grad = None
    (per_route_reference(mixer, x) * weights).sum().backward()
    torch.testing.assert_close(got_x, x.grad, rtol=1e-4, atol=1e-5)
    for name in ('x_proj_weight', 'A_logs', 'Ds', 'dt_projs_bias'):
        torch.testing.assert_close(got[name], getattr(mixer, name).grad, rtol=1e-4, atol=1e-5,
                                   msg=name)


def ssd_mixer_parameters(channels, state_size=64):
    """By hand, one ssd-tiny block's mixer: in_proj and out_proj (inner = channels, no gate), the
    depthwise 3x3 conv (no bias), per route x_proj (heads + 2N rows), A and dt bias per head, D
    per channel; the out norm. Heads per route: channels / 16."""
    heads = channels // 16
    return (2 * channels * channels + 9 * channels +
            4 * ((heads + 2 * state_size) * channels + 2 * heads + channels) + 2 * channels)


def test_ssd_tiny_is_vmamba_t_with_the_counted_ssd_mixers():
    ssd, vmamba = create_model('ssd-tiny'), create_model('tiny-s1l8')
    mixers = [m for m in ssd.modules() if isinstance(m, SSD)]
    dims, depths = ssd.backbone.dims, ssd.backbone.arch_settings['depths']
    assert len(mixers) == sum(depths) == 14
    assert {(m.state_size, m.head_dim, m.gated) for m in mixers} == {(64, 16, False)}
    expected = sum(depth * ssd_mixer_parameters(c) for depth, c in zip(depths, dims))
    assert sum(p.numel() for m in mixers for p in m.parameters()) == expected

    def params(modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    # Everything but the mixers is VMamba-T's.
    ss2d = [m for m in vmamba.modules() if isinstance(m, SS2D)]
    assert params([ssd]) - expected == params([vmamba]) - params(ss2d)


def small_ssd_arch(**changes):
    return dict(dict(depths=[1, 1], dims=16, forward_type='m0', ssm_d_state=4, ssm_ratio=1.0,
                     mlp_ratio=0.0, downsample_version='v3', patchembed_version='v2',
                     norm_layer='ln2d', drop_path_rate=0.0), **changes)


def test_the_flop_count_is_the_ssd_rule_on_every_route():
    model = VSSM(small_ssd_arch(), out_indices=(1, )).to('meta')

    def count():
        return count_macs(model, lambda: model(torch.empty(1, 3, 32, 36, device='meta')),
                          'meta')[0].total

    with_scan = count()
    for mixer in model.modules():
        if isinstance(mixer, SSD):
            mixer.remove_scan()
    # Per stage: 8x9 tokens of 16 channels (one head of 16 per route), then 4x5 of 32 (two);
    # four routes, one group each. The D skip is element-wise work the counter sees as none.
    # Besides the scan, each route's projection to (heads + 2 N) rows runs in scan().
    expected = sum(ssd_scan_macs(1, tokens, 4 * heads, 16, 4, groups=4, with_skip=False) +
                   tokens * 4 * (heads + 2 * 4) * 16 * heads
                   for tokens, heads in ((72, 1), (20, 2)))
    assert with_scan - count() == expected


def test_export_and_fullgraph_compile_match_eager():
    torch.manual_seed(0)
    model = VSSM(small_ssd_arch(depths=[1]), out_indices=(0, )).eval()
    x = torch.randn(1, 3, 20, 28)
    with torch.no_grad():
        (expected, ) = model(x)
    program = torch.export.export(model, (x, ))
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    with torch.no_grad():
        for (got, ) in (program.module()(x), compiled(x)):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_small_ssd_classifier_learns():
    torch.manual_seed(0)
    model = create_model(small_ssd_arch(dims=8), num_classes=3)
    images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    losses = losses_of_a_few_steps(model, images, labels)
    assert losses[-1] < 0.7 * losses[0], losses


def test_bad_options_are_named():
    arch = dict(depths=[1], dims=16, ssm_ratio=1.0)
    with pytest.raises(ValueError, match=r"inner width 16 .* does not split into dt_rank=3 "
                       r'heads \(arch: ssm_dt_rank\)'):
        VSSM(dict(arch, mixer='ssd', ssm_dt_rank=3))
    for option, value, error in (('state_size', 0, ValueError), ('chunk_size', 1.5, TypeError),
                                 ('conv_size', 4, ValueError), ('scan_order', 'zigzag',
                                                                ValueError)):
        with pytest.raises(error, match=rf"mixer 'ssd' option {option} must be"):
            VSSM(dict(arch, mixer={'type': 'ssd', option: value}))
    with pytest.raises(ValueError, match=r"forward_type 'm0' is mixer 'ssd'.*mixer is 'v2m'"):
        VSSM(dict(arch, forward_type='m0', mixer='v2m'))
    with pytest.raises(ValueError, match="scan_2d.*'ssd'"):
        VSSM(dict(arch, mixer='ssd', scan_2d=True))


def test_the_scan_floor_stand_in_is_the_direct_terms():
    mixer = random_mixer(channel_first=True)
    x = torch.randn(1, 12, 3, 5)
    mixer.remove_scan()
    with torch.no_grad():
        torch.testing.assert_close(mixer.run_scan(x),
                                   x * mixer.Ds.view(4, 12).sum(0).view(-1, 1, 1))
