"""benchmark.py --flops: the summary's parameters and FLOPs are the model's and get_flops.py's."""
import re

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from tests.paths import DEMO_CLASSIFICATION
from tests.tool_runs import load_script


def test_flops_summary_matches_the_model_and_get_flops(capsys):
    bench = load_script('tools/analysis_tools/benchmark.py', 'vmamba_benchmark_flops')
    # A non-square size, so that a height and width swapped on the way would change the count.
    assert bench.main([DEMO_CLASSIFICATION, '--flops', '--shape', '32', '48', '--device', 'cpu',
                       '--threads', '1', '--warmup', '0', '--iters', '1', '--rounds', '1']) == 0
    out = capsys.readouterr().out
    summary = out.split('\nsummary (batch 1, device cpu, threads 1; ')[1]
    rows = re.findall(r'^classification\s+32x48\s+([\d,]+)\s+(\S+)\s+([\d.]+)\s+([\d.]+)$',
                      summary, re.MULTILINE)
    assert len(rows) == 1, out
    params, flops, ips, ms = rows[0]
    assert float(ips) > 0 and float(ms) > 0

    cfg = Config.fromfile(DEMO_CLASSIFICATION)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    assert int(params.replace(',', '')) == sum(p.numel() for p in model.parameters())

    get_flops = load_script('tools/analysis_tools/get_flops.py', 'vmamba_get_flops_for_bench')
    assert get_flops.main([DEMO_CLASSIFICATION, '--shape', '32', '48']) == 0
    counted = re.search(r'^Flops: (\S+)$', capsys.readouterr().out, re.MULTILINE)
    assert counted is not None and counted.group(1) == flops
