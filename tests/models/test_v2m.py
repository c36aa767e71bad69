"""The V2M mixer: its cascade of scans against a sequential 2D recurrence written here, cell by
cell, on odd and non-square grids; gradients; the v2m archs; training, export, compile and the
FLOP count of a small V2M model; option errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from tests.training_steps import losses_of_a_few_steps
from vmamba_kernels import available_backends
from vmamba_mm.analysis.flops import count_macs
from vmamba_mm.models import VSSM, create_model
from vmamba_mm.models.mixers import V2M

BACKENDS = available_backends('v2m_scan')
# (flip rows, flip columns) per orientation: the scan starts top-left, top-right, bottom-left,
# bottom-right.
CORNERS = [(False, False), (False, True), (True, False), (True, True)]


def sequential_2d_reference(mixer, x):
    """The V2M cascade of ``mixer`` on a (B, D, H, W) map, float64, one grid cell at a time.

    For each corner: the row recurrence (input-dependent delta and B, the N states summed),
    the column conv and SiLU, the column recurrence (B = 1, input-dependent C), each cell
    written back to the pixel it came from; the four results summed and halved.
    """
    x = x.double()
    batch, dim, height, width = x.shape
    rank, state = mixer.dt_rank, mixer.state_size

    def stage(prefix, orientation):
        rows = slice(orientation * dim, (orientation + 1) * dim)
        return (getattr(mixer, f'{prefix}_x_proj_weight')[orientation].double(),
                getattr(mixer, f'{prefix}_dt_projs_weight')[orientation].double(),
                getattr(mixer, f'{prefix}_dt_projs_bias')[orientation].double(),
                -torch.exp(getattr(mixer, f'{prefix}_A_logs')[rows].double()),
                getattr(mixer, f'{prefix}_Ds')[rows].double())

    def delta_and_state_input(token, x_proj, dt_proj, dt_bias):
        projected = token @ x_proj.t()
        return F.softplus(projected[:, :rank] @ dt_proj.t() + dt_bias), projected[:, rank:]

    out = torch.zeros(batch, dim, height, width, dtype=torch.float64)
    def pixel_of(orientation, i, j):
        """The pixel that cell (i, j) of ``orientation``'s grid is."""
        flip_rows, flip_columns = CORNERS[orientation]
        return (height - 1 - i if flip_rows else i, width - 1 - j if flip_columns else j)

    for orientation in range(len(CORNERS)):
        def pixel(i, j):
            return pixel_of(orientation, i, j)  # noqa: B023  (called within this iteration)

        x_proj, dt_proj, dt_bias, A, D = stage('row', orientation)
        rows_done = torch.zeros(batch, dim, height, width, dtype=torch.float64)
        for i in range(height):
            h = torch.zeros(batch, dim, state, dtype=torch.float64)
            for j in range(width):
                u = x[:, :, pixel(i, j)[0], pixel(i, j)[1]]
                delta, B = delta_and_state_input(u, x_proj, dt_proj, dt_bias)
                h = torch.exp(delta[..., None] * A) * h + delta[..., None] * B[:, None] * \
                    u[..., None]
                rows_done[:, :, i, j] = h.sum(-1) + D * u

        conv = mixer.column_conv2d
        channels = slice(orientation * dim, (orientation + 1) * dim)
        v = F.silu(F.conv2d(rows_done, conv.weight[channels].double(),
                            None if conv.bias is None else conv.bias[channels].double(),
                            padding=conv.kernel_size[0] // 2, groups=dim))

        x_proj, dt_proj, dt_bias, A, D = stage('column', orientation)
        for j in range(width):
            g = torch.zeros(batch, dim, state, dtype=torch.float64)
            for i in range(height):
                u = v[:, :, i, j]
                delta, C = delta_and_state_input(u, x_proj, dt_proj, dt_bias)
                g = torch.exp(delta[..., None] * A) * g + delta[..., None] * u[..., None]
                row, column = pixel(i, j)
                out[:, :, row, column] += ((g * C[:, None]).sum(-1) + D * u) / 2
    return out


def random_mixer(channels=6, state_size=3, channel_first=True, backend=None, **options):
    torch.manual_seed(0)
    mixer = V2M(channels, state_size=state_size, dt_rank=2, conv_bias=True,
                channel_first=channel_first, scan_backend=backend, **options)
    with torch.no_grad():  # away from the initial values, which hide mistakes (D = 1, A_n = -n)
        for name, parameter in mixer.named_parameters():
            if name.endswith(('A_logs', 'Ds', 'dt_projs_bias')):
                parameter.add_(0.3 * torch.randn_like(parameter))
    return mixer


def scan_in_channel_first(mixer, x):
    y = mixer.scan(x)
    return y if mixer.channel_first else y.permute(0, 3, 1, 2)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('grid, channel_first', [((5, 7), True), ((3, 4), False)])
def test_cascade_matches_the_sequential_2d_reference(backend, grid, channel_first):
    mixer = random_mixer(channel_first=channel_first, backend=backend)
    x = torch.randn(2, mixer.inner, *grid)
    with torch.no_grad():
        got = scan_in_channel_first(mixer, x)
        expected = sequential_2d_reference(mixer, x)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    assert mixer.scan_backends() == {'cpu': backend}


def test_gradients_match_the_reference_and_reach_every_parameter():
    mixer = random_mixer(channel_first=False, gated=True)
    x = torch.randn(1, mixer.inner, 3, 5, requires_grad=True)
    grad_out = torch.randn(1, 3, 5, mixer.inner)  # the scan's output is channels-last here
    (mixer.scan(x) * grad_out).sum().backward()
    got = {name: p.grad.clone() for name, p in mixer.named_parameters() if p.grad is not None}
    got_x = x.grad.clone()
    mixer.zero_grad()
    x.grad = None
    reference = sequential_2d_reference(mixer, x)
    (reference.permute(0, 2, 3, 1) * grad_out.double()).sum().backward()
    torch.testing.assert_close(got_x, x.grad, rtol=1e-4, atol=1e-5)
    for name, p in mixer.named_parameters():
        if name.startswith(('row_', 'column_')):
            torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
    # Through the whole mixer (in_proj, gate, norm, out_proj too) every parameter learns.
    mixer.zero_grad()
    mixer(torch.randn(1, 3, 5, 6)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.parameters())


def v2m_mixer_parameters(channels, state_size, dt_rank, conv_size=3):
    """By hand: in_proj and out_proj (inner = channels, no gate), the depthwise convs (the
    shared one, then one per orientation before stage 2, no bias), per stage and orientation
    x_proj (rank + N rows), dt_proj, dt bias, A (N per channel) and D, and the out norm."""
    inner = channels
    per_stage = 4 * inner * ((dt_rank + state_size) + dt_rank + 1 + state_size + 1)
    return (2 * channels * inner + 5 * inner * conv_size**2 + 2 * per_stage + 2 * inner)


def test_v2m_tiny_builds_with_the_counted_parameters():
    model = create_model('v2m-tiny')
    mixers = [m for m in model.modules() if isinstance(m, V2M)]
    backbone = model.backbone
    assert len(mixers) == sum(backbone.arch_settings['depths']) == 14
    assert {(m.state_size, m.dt_rank) for m in mixers} == {(4, 8)}
    expected = sum(depth * v2m_mixer_parameters(channels, 4, 8)
                   for depth, channels in zip(backbone.arch_settings['depths'], backbone.dims))
    assert sum(p.numel() for m in mixers for p in m.parameters()) == expected
    # The arch size check's estimate, made before anything is built, is within 1 %.
    options = dict(state_size=4, dt_rank=8, conv_bias=False)
    estimate = sum(depth * V2M.parameter_estimate(channels, options)
                   for depth, channels in zip(backbone.arch_settings['depths'], backbone.dims))
    assert math.isclose(estimate, expected, rel_tol=0.01)
    # The paper's V2M-S* (V2M on VMamba-T) has 30 M parameters.
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 30) < 0.5


def small_v2m_arch():
    return dict(depths=[1, 1], dims=8, mixer='v2m', ssm_d_state=2, ssm_ratio=1.0, mlp_ratio=0.0,
                downsample_version='v3', patchembed_version='v2', norm_layer='ln2d',
                drop_path_rate=0.0)


def test_a_small_v2m_classifier_learns():
    torch.manual_seed(0)
    model = create_model(small_v2m_arch(), num_classes=3)
    images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    losses = losses_of_a_few_steps(model, images, labels)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.skipif('cpp' not in BACKENDS, reason='the C++ extension is not built here')
def test_export_and_fullgraph_compile_match_eager():
    # One stage: every block is the same code, and each more costs seconds of tracing.
    torch.manual_seed(0)
    model = VSSM(dict(small_v2m_arch(), depths=[1]), out_indices=(0, ), scan_backend='cpp').eval()
    x = torch.randn(1, 3, 20, 28)
    with torch.no_grad():
        (expected, ) = model(x)
    program = torch.export.export(model, (x, ))
    scan_ops = [str(node.target) for node in program.graph.nodes
                if str(node.target).startswith('vmamba.')]
    assert scan_ops == ['vmamba.v2m_scan_cpp.default'] * 2  # row and column stages
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    with torch.no_grad():
        for (got, ) in (program.module()(x), compiled(x)):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_flop_count_holds_both_scans_of_every_orientation():
    model = VSSM(small_v2m_arch(), out_indices=(1, )).to('meta')
    count, _ = count_macs(model, lambda: model(torch.empty(1, 3, 32, 32, device='meta')), 'meta')
    # By the scan rule 9 B L D N + B D L, per stage: the v2 patch embedding leaves 8x8 tokens of
    # 8 channels, the downsample 4x4 of 16; every stage scans 4 orientations of all channels.
    state = 2
    expected = sum(2 * (9 * tokens * 4 * channels * state + tokens * 4 * channels)
                   for tokens, channels in ((64, 8), (16, 16)))
    assert count.by_operator['vmamba.v2m_scan_cpp'] == expected


def test_bad_options_are_named():
    arch = dict(depths=[1], dims=8)
    with pytest.raises(KeyError, match=r"'colour'.*'v2m'.*'conv_size'.*'state_size'"):
        VSSM(dict(arch, mixer=dict(type='v2m', colour=1)))
    for option, value, error in (('state_size', 0, ValueError), ('dt_rank', 1.5, TypeError),
                                 ('conv_size', 4, ValueError), ('gated', 'yes', TypeError)):
        with pytest.raises(error, match=rf"mixer 'v2m' option {option} must be"):
            VSSM(dict(arch, mixer={'type': 'v2m', option: value}))
    with pytest.raises(ValueError, match="scan_2d.*'v2m'"):
        VSSM(dict(arch, mixer='v2m', scan_2d=True))


def test_the_scan_floor_stand_in_is_the_direct_terms():
    from vmamba_mm.analysis.scan_ablation import remove_scans
    mixer = random_mixer(channel_first=True)
    x = torch.randn(1, mixer.inner, 3, 5)
    with torch.no_grad():
        scanned = mixer(torch.randn(1, 6, 3, 5))
        assert remove_scans(mixer) == 1
        # Each orientation's direct path is D2 * D1 * x without the conv; four summed, halved.
        gains = (mixer.row_Ds * mixer.column_Ds).view(4, mixer.inner).sum(0) / 2
        torch.testing.assert_close(mixer.run_scan(x), x * gains.view(-1, 1, 1))
        assert mixer(torch.randn(1, 6, 3, 5)).shape == scanned.shape
