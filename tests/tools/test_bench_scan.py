"""tools/analysis_tools/bench_scan.py runs the 1D and 2D scans, and the SSD scan, on the CPU and
prints figures."""
import re

from tests.tool_runs import run_python


def test_bench_scan_times_the_2d_scan_beside_the_1d_one():
    run = run_python('tools/analysis_tools/bench_scan.py', '--batch', '1', '--dim', '8',
                     '--grid', '5', '7', '--state', '2', '--groups', '2', '--device', 'cpu',
                     '--iters', '1', '--backends', 'torch')
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert 'selective_scan batch 1 dim 8 L 35' in out
    assert 'selective_scan_2d batch 1 dim 8 L 35' in out and 'grid 5x7' in out
    figures = re.findall(r'torch\s+(fwd|fwd\+bwd)\s+[\d.]+ ms\s+[\d.]+ GB/s', out)
    assert figures == ['fwd', 'fwd+bwd'] * 2, out


def test_bench_scan_times_the_ssd_scan_on_each_backend():
    run = run_python('tools/analysis_tools/bench_scan.py', '--operation', 'ssd_scan', '--batch',
                     '1', '--dim', '8', '--headdim', '4', '--length', '20', '--state', '3',
                     '--groups', '1', '--chunk', '8', '--device', 'cpu', '--iters', '1',
                     '--backends', 'torch', 'cpp')
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert 'ssd_scan batch 1 L 20 heads 2 headdim 4 N 3 groups 1 chunk 8 float32 on cpu' in out
    figures = re.findall(r'(torch|cpp)\s+(fwd|fwd\+bwd)\s+[\d.]+ ms\s+[\d.]+ GB/s', out)
    assert figures == [('torch', 'fwd'), ('torch', 'fwd+bwd'), ('cpp', 'fwd'),
                       ('cpp', 'fwd+bwd')], out


def test_bench_scan_names_a_dim_that_the_heads_do_not_divide():
    run = run_python('tools/analysis_tools/bench_scan.py', '--operation', 'ssd_scan', '--dim',
                     '10', '--headdim', '4', '--device', 'cpu')
    assert run.returncode == 1
    assert 'error: --dim 10 is not a multiple of --headdim 4' in run.stderr
