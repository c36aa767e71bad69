"""benchmark.py --shapes/--plot: throughput and peak memory against the input size; --page-faults:
the page faults per iteration."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.paths import DEMO_CLASSIFICATION, ROOT
from tests.tool_runs import load_script, run_python

TOOL = 'tools/analysis_tools/benchmark.py'
MIB = 2**20


def _load_tool():
    return load_script(TOOL, 'vmamba_benchmark_scaling')


KNOWN_ALLOCATIONS = f"""
import importlib.util, json, torch
spec = importlib.util.spec_from_file_location('bench', {str(Path(ROOT) / TOOL)!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
MIB = 2**20
# 16 Mi float32 = 64 MiB; a + b holds three such tensors at once.
one = bench.cpu_peak_memory_increase(lambda _: torch.ones(16 * MIB), None)
three = bench.cpu_peak_memory_increase(lambda _: torch.ones(16 * MIB) + torch.ones(16 * MIB), None)
print(json.dumps([one, three]))
"""


def test_cpu_peak_memory_sees_a_known_allocation():
    # In a fresh process with the malloc settings of the tool's probes, as the tool measures: in
    # a long-lived process (this one) freed heap pages stay resident and are reused unseen.
    bench = _load_tool()
    env = dict(os.environ, **bench.PROBE_MALLOC_ENV)
    run = subprocess.run([sys.executable, '-c', KNOWN_ALLOCATIONS], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    one, three = json.loads(run.stdout.splitlines()[-1])
    assert one == pytest.approx(64 * MIB, abs=2 * MIB)
    assert three == pytest.approx(192 * MIB, abs=3 * MIB)


def test_shapes_table_and_plot_agree(tmp_path):
    plot = tmp_path / 'scaling.png'
    # One thread: on a busy 2-core machine two threads wait on each other.
    run = run_python(TOOL, DEMO_CLASSIFICATION, '--device', 'cpu', '--shapes', '64', '128',
                     '--threads', '1', '--warmup', '1', '--iters', '1', '--rounds', '2',
                     '--plot', plot)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'shapes 64x64, 128x128' in run.stdout
    table = run.stdout.split('\nscaling (batch 1; memory: peak RSS increase during one step, '
                             'fresh process per model and size)\n')[1]
    rows = re.findall(r'^classification\s+(\d+)x\1\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$', table,
                      re.MULTILINE)
    assert [size for size, *_ in rows] == ['64', '128'], run.stdout
    for _, ips, ms, peak in rows:
        assert float(ips) > 0 and float(ms) > 0 and float(peak) > 0
        # batch 1; both columns are rounded to 2 decimals (half a unit off at most)
        fastest, slowest = float(ms) - 0.005, float(ms) + 0.005
        assert 1000 / slowest - 0.0051 <= float(ips) <= 1000 / fastest + 0.0051
    # The series stored in the PNG are read back from the drawn lines; the table rounds to 2
    # decimals.
    with Image.open(plot) as image:
        assert image.format == 'PNG'
        series = json.loads(image.text['vmamba-mm:series'])
    for title, column in (('img/s', 1), ('peak memory (MiB)', 3)):
        drawn = series[title]['classification']
        assert [x for x, _ in drawn] == [int(row[0]) for row in rows], title
        assert [y for _, y in drawn] == pytest.approx([float(row[column]) for row in rows],
                                                      abs=0.0051), title


def test_plot_must_be_a_png(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main([DEMO_CLASSIFICATION, '--shapes', '32', '--plot', 'scaling.jpg'])
    assert exit_info.value.code == 2
    assert "--plot writes a PNG; give a path ending in .png, got 'scaling.jpg'" in \
        capsys.readouterr().err


def test_shapes_that_are_not_positive_or_too_small_are_named(capsys):
    bench = _load_tool()
    with pytest.raises(SystemExit) as exc:
        bench.main([DEMO_CLASSIFICATION, '--shape', '0', '0', '--device', 'cpu'])
    assert exc.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].endswith(
        ': error: --shape takes two positive sizes H W (e.g. --shape 224 224), got 0 0')
    # The demo classifier takes images of at least one 4x4 patch; nothing is timed.
    assert bench.main([DEMO_CLASSIFICATION, '--shapes', '2', '64', '--device', 'cpu']) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        'error: --shapes: classification takes images of at least 4x4, not 2x2; give --shapes '
        'S [S ...] with each size at least 4.'] and 'ms/iter' not in captured.out


FIRST_TOUCH = f"""
import importlib.util, torch
spec = importlib.util.spec_from_file_location('bench', {str(Path(ROOT) / TOOL)!r})
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
before = bench.minor_page_faults()
torch.ones(16 * 2**20)  # 64 MiB written for the first time: one fault per 4 KiB page
print(bench.minor_page_faults() - before)
"""


def test_page_fault_counter_sees_a_first_touch():
    child = subprocess.run([sys.executable, '-c', FIRST_TOUCH], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert int(child.stdout.strip()) >= 0.9 * 64 * MIB // 4096


def test_page_faults_column(capsys):
    bench = _load_tool()
    assert bench.main([DEMO_CLASSIFICATION, '--shape', '32', '32', '--device', 'cpu',
                       '--threads', '1', '--warmup', '1', '--iters', '2', '--rounds', '1',
                       '--page-faults']) == 0
    out = capsys.readouterr().out
    assert re.search(r'^classification .* ms/iter\s+\d+ page faults/iter$', out, re.MULTILINE), out
