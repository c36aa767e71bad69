"""benchmark.py --profile in PyTorch: a VSSM model's operator time by kind, its scan cores'
operators counted as scan, the kinds adding up to the total."""
import re

import pytest

from tests.paths import DEMO_CLASSIFICATION
from tests.tool_runs import load_script


def test_profile_by_kind_counts_the_scan_and_the_gemms(capsys):
    bench = load_script('tools/analysis_tools/benchmark.py', 'vmamba_benchmark_kinds')
    assert bench.main([DEMO_CLASSIFICATION, '--profile', '--shape', '32', '32', '--device',
                       'cpu', '--threads', '1', '--warmup', '1', '--iters', '2',
                       '--rounds', '1']) == 0
    out = capsys.readouterr().out
    section = out.split('\nclassification: operator self time by kind, ms per run under the '
                        'profiler (2 runs; ')[1].split('  costliest operators:')[0]
    kinds = dict((kind, (float(ms), int(share))) for kind, ms, share in
                 re.findall(r'^  (\S+)\s+([\d.]+) ms\s+(\d+)%$', section, re.MULTILINE))
    assert {'gemm/conv', 'scan', 'norms'} <= set(kinds), section
    assert sum(share for _, share in kinds.values()) == \
        pytest.approx(100, abs=len(kinds))  # each share rounded to a percent
    costliest = out.split('  costliest operators:\n')[1]
    assert re.search(r'^\s+[\d.]+ ms\s+\d+ calls  scan\s+vmamba::cross_selective_scan_\w+$',
                     costliest, re.MULTILINE), costliest
