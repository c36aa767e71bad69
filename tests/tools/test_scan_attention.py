"""The scan's implicit attention (vmamba_mm.analysis.scan_attention) and its tool.

Oracles: weights worked out by hand for a 3-step scan; the sequential reference recurrence
(vmamba_kernels' 'reference' backend) for every query step; the route order of a 2x3 grid
written out by hand; and a real SS2D block's own scan output (its C++ kernel).
"""
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.paths import DEMO_CLASSIFICATION, ROOT
from tests.tool_runs import run_python
from vmamba_kernels import selective_scan
from vmamba_kernels.routes import route_pixels
from vmamba_mm.analysis.scan_attention import block_scan_attention, scan_weights
from vmamba_mm.models.mixers import SS2D

TOOL = 'tools/analysis_tools/scan_attention.py'


def test_weights_of_a_three_step_scan_worked_by_hand():
    # exp(delta * A) = 2 ** -delta with A = -ln 2.
    delta = torch.tensor([[0.5, 1.0, 2.0]])
    A = torch.tensor([[-math.log(2.0)]])
    B = torch.tensor([[1.0, 2.0, 3.0]])
    C = torch.tensor([[1.0, 1.0, 2.0]])
    # query t = 2: w_s = C_2 * 2 ** -(delta_{s+1} + ... + delta_2) * delta_s * B_s
    #   s = 0: 2 * 2 ** -3 * 0.5 * 1 = 0.125;  s = 1: 2 * 2 ** -2 * 1 * 2 = 1;
    #   s = 2: 2 * 2 * 3 = 12
    # (A holds ln 2 rounded to float32: agreement to float32 precision)
    torch.testing.assert_close(scan_weights(delta, A, B, C, 2),
                               torch.tensor([[0.125, 1.0, 12.0]], dtype=torch.float64),
                               rtol=1e-7, atol=0)
    # query t = 1: s = 0: 1 * 2 ** -1 * 0.5 * 1 = 0.25;  s = 1: 1 * 1 * 2 = 2
    torch.testing.assert_close(scan_weights(delta, A, B, C, 1),
                               torch.tensor([[0.25, 2.0]], dtype=torch.float64), rtol=1e-7, atol=0)


@pytest.mark.parametrize('dim,state', [(1, 1), (3, 4)])
def test_weights_times_input_reproduce_the_recurrence(dim, state):
    gen = torch.Generator().manual_seed(dim * 10 + state)
    length = 23
    u = torch.randn(1, dim, length, generator=gen)
    delta = torch.rand(1, dim, length, generator=gen) * 0.8 + 0.05
    A = -torch.rand(dim, state, generator=gen) * 2 - 0.1
    B = torch.randn(1, state, length, generator=gen)
    C = torch.randn(1, state, length, generator=gen)
    D = torch.randn(dim, generator=gen)
    y = selective_scan(u, delta, A, B, C, D=D, backend='reference')[0]
    for t in range(length):
        w = scan_weights(delta[0], A, B[0], C[0], t)
        assert w.shape == (dim, t + 1)
        y_t = (w * u[0, :, :t + 1].double()).sum(-1) + D.double() * u[0, :, t].double()
        torch.testing.assert_close(y_t.float(), y[:, t], rtol=1e-5, atol=1e-6)


def test_routes_of_a_2x3_grid_worked_by_hand():
    # pixels   0 1 2
    #          3 4 5
    assert route_pixels('cross', 2, 3).tolist() == [
        [0, 1, 2, 3, 4, 5],  # row-major
        [0, 3, 1, 4, 2, 5],  # column-major
        [5, 4, 3, 2, 1, 0],  # row-major reversed
        [5, 2, 4, 1, 3, 0],  # column-major reversed
    ]


def _ss2d(gated, order, channel_first=False):
    torch.manual_seed(0)
    return SS2D(4, state_size=2, expand_ratio=1.0, gated=gated, scan_order=order,
                channel_first=channel_first).eval()


def test_attention_on_a_2x3_grid_lies_on_the_pixels_each_route_has_visited():
    ss2d = _ss2d(False, 'cross')
    x = torch.randn(1, 2, 3, 4)
    attention = block_scan_attention(ss2d, x, (0, 1))  # pixel 1
    visited = (attention['weights'].abs().sum(1) > 0).view(4, 6)
    # Route prefixes up to pixel 1, read off the hand-made table above.
    expected = [{0, 1}, {0, 3, 1}, {5, 4, 3, 2, 1}, {5, 2, 4, 1}]
    for route, pixels in enumerate(expected):
        assert set(visited[route].nonzero().flatten().tolist()) == pixels, route


@pytest.mark.parametrize('gated,order,channel_first', [
    (False, 'cross', False), (True, 'cross', True), (False, 'bidirectional', False),
    (False, 'unidirectional', False)])
def test_block_weights_reproduce_the_blocks_own_scan(gated, order, channel_first):
    ss2d = _ss2d(gated, order, channel_first)
    x = torch.randn(1, 4, 2, 3) if channel_first else torch.randn(1, 2, 3, 4)
    captured = {}
    ss2d.out_norm.register_forward_pre_hook(lambda m, a: captured.__setitem__('y', a[0]))
    with torch.no_grad():
        ss2d(x)
    scan = captured['y'] if channel_first else captured['y'].permute(0, 3, 1, 2)
    for row in range(2):
        for col in range(3):
            attention = block_scan_attention(ss2d, x, (row, col))
            # u is the same map on every route; route 0 of 'cross' and 'unidirectional' walks
            # row-major, so its u in step order is the map in pixel order.
            u = attention['u'][0, 0].gather(-1, torch.argsort(attention['pixels'][0])[None]
                                            .expand(4, 6)).view(4, 2, 3).double()
            mixed = (attention['weights'] * u).sum(dim=(0, 2, 3))
            expected = mixed + attention['D'].double().sum(0) * u[:, row, col]
            torch.testing.assert_close(expected.float(), scan[0, :, row, col], rtol=1e-4,
                                       atol=1e-5)


def test_tool_draws_routes_and_merged_panel_and_checks_the_operator(tmp_path):
    out = tmp_path / 'attn.png'
    run = run_python(TOOL, DEMO_CLASSIFICATION, '--random', '--shape', '48', '--block', '1.0',
                     '--route', 'all', '--query', '10', '30', '--out', out)
    assert run.returncode == 0, run.stderr[-3000:]
    # stage 1 of the demo VSSM: 48 / 8 = 6x6 grid; pixel (10, 30) is cell (1, 3)
    assert 'grid 6x6' in run.stdout and 'cell 1,3' in run.stdout, run.stdout
    # row-major route up to cell (1, 3): 1 * 6 + 3 + 1 = 10 pixels; column-major: 3 * 6 + 1 + 1
    assert re.search(r'route 0 \(row-major\): 10 source pixels', run.stdout), run.stdout
    assert re.search(r'route 1 \(column-major\): 20 source pixels', run.stdout), run.stdout
    assert re.search(r'route 2 \(row-major reversed\): 27 source pixels', run.stdout)
    assert re.search(r'route 3 \(column-major reversed\): 17 source pixels', run.stdout)
    check = re.search(r'operator check: .* to (\S+) of its scale', run.stdout)
    assert check and float(check.group(1)) < 1e-4, run.stdout
    with Image.open(out) as image:
        assert image.format == 'PNG' and image.size[0] > 5 * image.size[1]  # six panels


def test_tool_names_a_block_that_does_not_exist(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('vmamba_scan_attention_tool', Path(ROOT) / TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rc = tool.main([DEMO_CLASSIFICATION, '--random', '--shape', '32', '--block', '1.4',
                    '--out', str(tmp_path / 'attn.png')])
    assert rc == 2
    assert 'error: --block 1.4: the backbone has stages 0-3 with [1, 1, 2, 1] blocks' in \
        capsys.readouterr().err
