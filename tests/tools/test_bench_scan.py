"""tools/analysis_tools/bench_scan.py runs the 1D and 2D scans on the CPU and prints figures."""
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
