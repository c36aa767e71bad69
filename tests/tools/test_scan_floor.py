"""benchmark.py --scan-floor (the model timed with every scan replaced by its skip term) and
--profile (onnxruntime's time per operator type)."""
import re

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper

from tests.paths import DEMO_CLASSIFICATION
from tests.tool_runs import load_script, run_python
from vmamba_mm.analysis.scan_ablation import remove_scans
from vmamba_mm.deployment.onnx import profile_operators
from vmamba_mm.models import VSSM

TOOL = 'tools/analysis_tools/benchmark.py'
TINY = dict(depths=[1, 2], dims=8, ssm_d_state=1, ssm_ratio=1.0, forward_type='v05_noz')


@pytest.mark.parametrize('channel_first', [False, True])
def test_every_scan_becomes_its_skip_term(channel_first):
    backbone = VSSM(TINY, out_indices=(1, ), channel_first=channel_first).eval()
    assert remove_scans(backbone) == 3  # one SS2D per block
    ss2d = backbone.layers[1].blocks[0].op
    channels = ss2d.Ds.numel() // 4
    with torch.no_grad():
        ss2d.Ds.copy_(torch.arange(4 * channels, dtype=torch.float32))
    x = torch.randn(2, channels, 3, 5)
    # Hand-computed: route r's D for channel c is Ds[r * channels + c]; the routes add up.
    d_sum = torch.stack([torch.arange(channels) + r * channels for r in range(4)]).sum(0).float()
    expected = x * d_sum.view(channels, 1, 1)
    if not channel_first:
        expected = expected.permute(0, 2, 3, 1)
    assert torch.equal(ss2d.run_scan(x), expected)  # the scan core as the forward calls it
    # The whole backbone still runs (the ablation is timed end to end).
    assert backbone(torch.randn(1, 3, 32, 32))[0].shape[1] == 16


def test_a_model_without_ss2d_is_left_alone():
    assert remove_scans(nn.Sequential(nn.Linear(4, 4), nn.ReLU())) == 0


def test_floor_row_and_operator_profile_in_onnxruntime():
    run = run_python(TOOL, DEMO_CLASSIFICATION, '--runtime', 'onnxruntime', '--scan-floor',
                     '--profile',
                     '--shape', '64', '64', '--threads', '1', '--warmup', '1', '--iters', '1',
                     '--rounds', '2', '--device', 'cpu')
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r'classification \[scans removed\]: exported to \S+_noscan_64x64_b1\.onnx',
                     run.stdout), run.stdout
    real = re.search(r'^classification\s+params\s+([\d,]+).*\s([\d.]+) ms/iter$', run.stdout,
                     re.MULTILINE)
    floor = re.search(r'^classification \[scans removed\]\s+params\s+([\d,]+).*\s([\d.]+) '
                      r'ms/iter  x([\d.]+) the time of classification \(its scans: (-?[\d.]+) '
                      r'ms/iter\)$', run.stdout, re.MULTILINE)
    assert real and floor, run.stdout
    assert floor.group(1) == real.group(1)  # same parameters, only the scan call differs
    real_ms, floor_ms = float(real.group(2)), float(floor.group(2))
    # Every printed figure is rounded to two decimals (half a unit off at most), so the printed
    # ratio lies within the ratios the printed times allow, widened by its own rounding.
    ratios = [(floor_ms + f) / (real_ms + r) for f in (-0.005, 0.005) for r in (-0.005, 0.005)]
    assert min(ratios) - 0.005 <= float(floor.group(3)) <= max(ratios) + 0.005
    assert float(floor.group(4)) == pytest.approx(real_ms - floor_ms, abs=0.0151)  # 3 roundings
    for name in ('classification', r'classification \[scans removed\]'):
        section = re.search(rf'^{name}: onnxruntime operator types, ms per run under the profiler '
                            rf'\(1 runs; [\d.]+ ms per profiled run\)\n((?:  .+\n?)+)', run.stdout,
                            re.MULTILINE)
        assert section, run.stdout
        assert re.search(r'^  (MatMul|Gemm)\s+[\d.]+ ms\s+\d+ nodes$', section.group(1),
                         re.MULTILINE), section.group(1)


def test_profile_counts_each_operator_once_per_run(tmp_path):
    # Three Adds and a Mul of the input and a constant: nothing onnxruntime can fold or fuse.
    square = [64, 64]
    nodes = [helper.make_node('Add', ['x', 'two'], ['a']),
             helper.make_node('Mul', ['a', 'x'], ['b']),
             helper.make_node('Add', ['b', 'x'], ['c']),
             helper.make_node('Add', ['c', 'a'], ['z'])]
    graph = helper.make_graph(
        nodes, 'four_nodes', [helper.make_tensor_value_info('x', TensorProto.FLOAT, square)],
        [helper.make_tensor_value_info('z', TensorProto.FLOAT, square)],
        initializer=[helper.make_tensor('two', TensorProto.FLOAT, square,
                                        np.full(64 * 64, 2.0, np.float32))])
    path = str(tmp_path / 'four_nodes.onnx')
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    batch = np.ones(square, np.float32)
    rows, run_ms = profile_operators(path, batch, runs=4, threads=1)
    assert {row.op_type: row.nodes_per_run for row in rows} == {'Add': 3, 'Mul': 1}
    assert all(row.ms_per_run > 0 for row in rows)
    assert sum(row.ms_per_run for row in rows) <= run_ms
    with pytest.raises(ValueError, match='runs must be >= 1, got 0'):
        profile_operators(path, batch, runs=0)


def test_profile_on_a_gpu_points_to_gpu_check(capsys):
    # --profile profiles CPU operators (onnxruntime's or PyTorch's); a GPU's kernels are
    # gpu_check.py's profile section
    with pytest.raises(SystemExit) as exit_info:
        load_script(TOOL, 'vmamba_benchmark_profile').main([DEMO_CLASSIFICATION, '--profile',
                                                            '--device', 'cuda'])
    assert exit_info.value.code == 2
    assert "--profile profiles CPU operators; on a GPU, gpu_check.py's profile section" in \
        capsys.readouterr().err
