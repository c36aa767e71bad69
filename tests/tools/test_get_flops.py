"""The FLOP counter (vmamba_mm/analysis/flops.py) and tools/analysis_tools/get_flops.py:
hand-counted modules, the official classification table, the released detection and segmentation
totals."""
import importlib.util
import os
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.official import CLASSIFIERS, DOWNSTREAM, OFFICIAL_DOWNSTREAM_GFLOPS, OFFICIAL_GFLOPS
from tests.paths import CONFIG_DIR, DEMO_CLASSIFICATION, DEMO_DETECTION, TOOLS_DIR
from tests.tool_runs import run_python
from vmamba_kernels import available_backends
from vmamba_mm.analysis.flops import count_config, count_macs
from vmamba_mm.models.mixers import SS2D

GET_FLOPS = os.path.join(TOOLS_DIR, 'analysis_tools', 'get_flops.py')
HAS_CPP = 'cpp' in available_backends()
DEVICES = ['meta', pytest.param('cpu', marks=pytest.mark.skipif(
    not HAS_CPP, reason='the C++ CPU scan kernel is not built'))]


class HandCounted(nn.Module):
    """One of each counted operation on a (1, 3, 6, 5) image, and some that count nothing."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 8)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.A = nn.Parameter(-torch.ones(8, 2))
        self.D = nn.Parameter(torch.ones(8))

    def forward(self, x):
        x = self.conv(x)
        x = self.proj(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        x = F.gelu(self.bn(x)) * 2 + 1  # element-wise: nothing
        up = F.interpolate(x, scale_factor=2, mode='bilinear') + F.interpolate(
            x, scale_factor=2, mode='nearest')
        F.max_pool2d(up, 2)  # nothing, as in fvcore
        seq = x.flatten(2)  # (1, 8, 30)
        bc = seq[:, :2].unsqueeze(1)  # (1, 1, 2, 30): one group of state 2
        y = torch.ops.vmamba.selective_scan_cpp(seq, seq, self.A, bc, bc, self.D, None, True)
        return self.pool(y.view(1, 8, 6, 5))


@pytest.mark.parametrize('device', DEVICES)
def test_a_hand_counted_module(device):
    model = HandCounted().to(device)
    x = torch.ones(1, 3, 6, 5, device=device)
    count, out = count_macs(model, lambda: model(x), device)
    assert out.shape == (1, 8, 1, 1)
    expected = {
        'conv': 4 * 6 * 5 * (3 * 3 * 3),  # 120 outputs x 27 multiply-adds = 3240 (bias: none)
        'norm': 30 * 4 * 5,  # LayerNorm with affine: 5 per element = 600
        'proj': 30 * 4 * 8,  # 960
        'bn': 8 * 30 * 2,  # BatchNorm in eval mode: 2 per element = 480
        'pool': 8 * 30,  # 1 per input element = 240
    }
    for name, macs in expected.items():
        assert count.module_total(name) == macs, name
    resize = 4 * (8 * 12 * 10) + 8 * 12 * 10  # bilinear 4, nearest 1 per output element = 4800
    scan = 9 * 1 * 30 * 8 * 2 + 1 * 8 * 30  # 9 B L D N + B D L = 4560
    assert count.by_module[''] == resize + scan  # computed in the model's own forward
    assert count.total == sum(expected.values()) + resize + scan == 14880
    assert model.training  # counted in eval mode (BatchNorm: 2 per element), then restored


@pytest.mark.parametrize('device', DEVICES)
def test_ss2d_counts_the_kernel_rule_whatever_its_backend(device):
    # The torch backend (the one configured) is tensor ops that count nothing like the official
    # rule; while counting, SS2D scans on a kernel operator, and keeps its own choice after.
    block = SS2D(4, state_size=2, expand_ratio=1.0, dt_rank=1, conv_size=3, gated=False,
                 scan_backend='torch').to(device)
    x = torch.randn(1, 3, 5, 4).to(device)  # (B, H, W, C): L = 15
    if device == 'cpu':
        block(x)  # resolves its 'torch' backend for cpu
    before = block.scan_backends()
    count, _ = count_macs(block, lambda: block(x), device)
    length, inner, routes = 15, 4, 4
    assert count.total == (
        length * 4 * inner  # in_proj 240
        + length * inner * 9  # depthwise 3x3 conv 540
        + routes * (1 + 2 * 2) * inner * length  # x_proj to (dt rank 1, B, C) 1200
        + routes * inner * 1 * length  # dt_proj 240
        + 9 * length * routes * inner * 2 + length * routes * inner  # scan, D = 16: 4560
        + length * inner * 5  # out_norm 300
        + length * inner * 4)  # out_proj 240
    assert block.scan_backends() == before


def test_the_nine_classifiers_match_the_official_table():
    for arch, official in OFFICIAL_GFLOPS.items():
        config = os.path.join(CONFIG_DIR, 'vmamba', f'vmamba-{arch}_8xb128_in1k.py')
        result = count_config(config)
        assert result.input_shape == (3, 224, 224) and result.device == 'meta'
        assert result.params == CLASSIFIERS[arch].params, arch
        gflops = result.count.total / 1e9
        assert abs(gflops - official) <= 0.005 * official, (arch, gflops, official)


def test_upernet_reproduces_the_released_total():
    config = 'upernet/upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512'
    readme, script = OFFICIAL_DOWNSTREAM_GFLOPS[config]
    result = count_config(os.path.join(CONFIG_DIR, config + '.py'))
    assert result.input_shape == (3, 512, 2048) and result.device == 'meta'
    assert result.params == DOWNSTREAM[config].params
    gflops = result.count.total / 1e9
    assert abs(gflops - script) <= 0.001 * script and round(gflops) == readme, gflops
    assert result.count.module_total('auxiliary_head') == 0  # training-only, not counted


@pytest.mark.slow  # about 20 s: Mask R-CNN runs on the CPU at 1280x800
def test_mask_rcnn_reproduces_the_released_total():
    config = 'mask_rcnn/mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco'
    readme, script = OFFICIAL_DOWNSTREAM_GFLOPS[config]
    if not HAS_CPP:
        pytest.skip('a detector is counted on real CPU tensors, with the C++ scan kernel')
    result = count_config(os.path.join(CONFIG_DIR, config + '.py'))
    assert result.input_shape == (3, 1280, 800) and result.device == 'cpu'
    assert result.params == DOWNSTREAM[config].params
    assert 'RoI box head on 1000 proposals' in result.covers
    assert 'RoI mask head on 100' in result.covers
    gflops = result.count.total / 1e9
    assert abs(gflops - script) <= 0.001 * script and round(gflops) == readme, gflops
    backbone = result.count.module_total('backbone') / 1e9
    assert 0 < backbone < gflops


def test_the_tool_prints_the_summary_and_the_table():
    run = run_python(GET_FLOPS, DEMO_CLASSIFICATION, '--shape', '64', '--table', '--depth', '2',
                     '--cfg-options', 'model.backbone.scan_backend=torch')
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    summary = re.search(r'={30}\nInput shape: \(3, 64, 64\)\nFlops: ([\d.]+)([MG])\n'
                        r'Params: ([\d.]+)M\n={30}', out)
    assert summary, out
    result = count_config(DEMO_CLASSIFICATION, (64, 64))
    flops = float(summary.group(1)) * (1e6 if summary.group(2) == 'M' else 1e9)
    assert abs(flops - result.count.total) <= 0.001 * result.count.total
    assert abs(float(summary.group(3)) * 1e6 - result.params) <= 1e3
    assert re.search(r'^backbone\.layers\s+[\d.]+[KM]\s+[\d.]+[KMG]\s+[\d.]+%$', out, re.M), out
    assert re.search(r'^\s+vmamba\.cross_selective_scan_cpp\s', out, re.M), out
    assert 'multiply-adds' in out and 'meta tensors' in out


def _tool():
    spec = importlib.util.spec_from_file_location('get_flops_tool', GET_FLOPS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tool_names_bad_input_and_exits_2(capsys, tmp_path):
    tool = _tool()
    missing = str(tmp_path / 'nope.py')
    assert tool.main([missing]) == 2
    assert f'error: Config file not found: {missing}' in capsys.readouterr().err
    assert tool.main([DEMO_CLASSIFICATION, '--cfg-options', 'model.backbone.archh=x']) == 2
    assert 'archh' in capsys.readouterr().err
    assert tool.main([DEMO_DETECTION, '--device', 'meta']) == 2
    assert 'error: a detector cannot be counted on the meta device' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        tool.main([DEMO_CLASSIFICATION, '--shape', '1', '2', '3'])
    assert exc.value.code == 2
    assert '--shape takes H W or one size S' in capsys.readouterr().err


def test_a_shape_smaller_than_the_model_takes_is_named_with_its_flag(capsys):
    tool = _tool()
    # The demo classifier's 'v1' patch embedding is one 4x4 patch: its smallest input is 4x4.
    for shape in (['2'], ['3', '64']):
        assert tool.main([DEMO_CLASSIFICATION, '--shape', *shape]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('error: --shape ') and \
            err[0].endswith('the model takes images of at least 4x4; give --shape H W (or one '
                            'size S) with each side at least 4.'), err
    assert tool.main([DEMO_CLASSIFICATION, '--shape', '4']) == 0
    assert 'Input shape: (3, 4, 4)' in capsys.readouterr().out
