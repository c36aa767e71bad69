"""Effective receptive fields (vmamba_mm.analysis.erf) and tools/analysis_tools/erf.py.

Oracles: the ERF of one k x k convolution is its summed kernel, worked out by hand below; area
ratios and the log scaling of hand-made maps.
"""
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.paths import DEMO_CLASSIFICATION, DEMO_CLASSIFICATION_2D, ROOT
from tests.tool_runs import run_python
from vmamba_mm.analysis.erf import (effective_receptive_field, high_contribution_area_ratio,
                                    log_normalised)

TOOL = 'tools/analysis_tools/erf.py'

# Two output channels over three input channels, 3x3.
KERNEL = torch.tensor([
    [[[1, 0, -1], [2, 0, -2], [1, 0, -1]],
     [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
     [[0, 0, 0], [0, 3, 0], [0, 0, 0]]],
    [[[0, 1, 0], [0, 1, 0], [0, 1, 0]],
     [[-2, -2, -2], [0, 0, 0], [0, 0, 0]],
     [[0, 0, 0], [0, -1, 0], [0, 0, 1]]],
], dtype=torch.float32)
# The kernel summed over the output channels, per input channel:
#   c0 [[1, 1, -1], [2, 1, -2], [1, 1, -1]]
#   c1 [[-1, -1, -1], [1, 1, 1], [1, 1, 1]]
#   c2 [[0, 0, 0], [0, 2, 0], [0, 0, 1]]
# abs: sum over c of |.|;  relu: sum over c of max(., 0).
BY_HAND = {
    'abs': [[2, 2, 2], [3, 4, 3], [2, 2, 3]],
    'relu': [[1, 1, 0], [3, 4, 1], [2, 2, 2]],
}
# relu with output channel 1 negative at the centre: only channel 0 counts,
#   c0 relu [[1, 0, 0], [2, 0, 0], [1, 0, 0]] + c1 all 1 + c2 centre 3.
BY_HAND_CHANNEL_0_ONLY = [[2, 1, 1], [3, 4, 1], [2, 1, 1]]


def _conv(bias):
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(KERNEL)
        conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return conv


def _expected(pattern, size=7):
    expected = torch.zeros(size, size, dtype=torch.float64)
    centre = size // 2
    expected[centre - 1:centre + 2, centre - 1:centre + 2] = torch.tensor(pattern,
                                                                          dtype=torch.float64)
    return expected


@pytest.mark.parametrize('mode', ['abs', 'relu'])
def test_erf_of_one_convolution_is_its_kernel_pattern(mode):
    conv = _conv([100.0, 100.0])  # both centre outputs positive for inputs in [-1, 1)
    images = torch.rand(5, 3, 7, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batches = [images[:2], images[2:]]  # averaged over images, whatever the batching
    erf = effective_receptive_field(conv, batches, mode)
    torch.testing.assert_close(erf, _expected(BY_HAND[mode]), rtol=0, atol=1e-12)


def test_relu_mode_drops_output_channels_that_are_off_at_the_centre():
    conv = _conv([100.0, -100.0])
    images = torch.rand(3, 3, 7, 7, generator=torch.Generator().manual_seed(1)) * 2 - 1
    erf = effective_receptive_field(conv, [images], 'relu')
    torch.testing.assert_close(erf, _expected(BY_HAND_CHANNEL_0_ONLY), rtol=0, atol=1e-12)


def test_log_scaling_of_a_hand_made_map():
    shown = log_normalised(torch.tensor([[0.0, 9.0], [99.0, 999.0]]))
    torch.testing.assert_close(shown, torch.tensor([[0, 1 / 3], [2 / 3, 1]], dtype=torch.float64))


def test_area_ratio_of_a_hand_made_map():
    # centre 10, its 8 neighbours 1 each (8), the outer ring 16 x 0.5 (8): total 26
    erf = torch.full((5, 5), 0.5)
    erf[1:4, 1:4] = 1.0
    erf[2, 2] = 10.0
    assert high_contribution_area_ratio(erf, 0.2) == (1, 1 / 25)  # 10 > 5.2
    assert high_contribution_area_ratio(erf, 0.5) == (3, 9 / 25)  # 10 < 13 < 18
    assert high_contribution_area_ratio(erf, 0.9) == (5, 1.0)  # 18 < 23.4 < 26
    # An even side: the square around (2, 2) is cut at the border.
    assert high_contribution_area_ratio(torch.ones(4, 4), 0.5) == (3, 9 / 16)  # 9 > 8
    assert high_contribution_area_ratio(torch.ones(4, 4), 0.6) == (5, 1.0)  # cut to 4x4


def test_tool_draws_side_by_side_maps_and_prints_ratios(tmp_path):
    out = tmp_path / 'erf.png'
    run = run_python(TOOL, DEMO_CLASSIFICATION, DEMO_CLASSIFICATION_2D, '--random', '3',
                     '--shape', '32', '--batch-size', '2', '--out', out)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'ERF (relu gradients) at 32x32 over 3 random images' in run.stdout, run.stdout
    ratios = re.findall(r'^(classification(?:_2d)?) \(init\): high-contribution area ratio '
                        r'20% of ERF in (\d+)x\d+ = ([\d.]+)', run.stdout, re.MULTILINE)
    assert [name for name, _, _ in ratios] == ['classification', 'classification_2d']
    for _, side, ratio in ratios:
        assert 0 < float(ratio) <= 1 and float(ratio) == pytest.approx(
            min(int(side), 32) ** 2 / 32 ** 2, abs=1e-4)
    with Image.open(out) as image:
        assert image.format == 'PNG' and image.size[0] > image.size[1]  # two panels side by side


def _load_tool():
    spec = importlib.util.spec_from_file_location('vmamba_erf_tool', Path(ROOT) / TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_needs_one_checkpoint_per_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main([DEMO_CLASSIFICATION, DEMO_CLASSIFICATION_2D, '--checkpoint', 'none',
                           '--random', '1', '--out', str(tmp_path / 'erf.png')])
    assert exit_info.value.code == 2
    assert 'error: --checkpoint takes one path (or "none") per config: 2 configs, 1 ' \
        'checkpoints' in capsys.readouterr().err


def test_compare_swin_adds_mmpretrain_swin_t_as_the_last_model():
    from tests.tool_runs import load_script
    erf = load_script(TOOL, 'vmamba_erf_compare')
    names = [name for name, _ in erf.build_models([DEMO_CLASSIFICATION], None, None, True)]
    assert names == ['classification (init)', 'swin-tiny_16xb64_in1k (mmpretrain) (init)']
