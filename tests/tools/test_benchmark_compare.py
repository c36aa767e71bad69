"""benchmark.py --compare: peers in the same rounds, each row's ratio to the first model, its
peak memory and its share of the GEMM rate, recomputed from the printed figures, for inference
and for training steps."""
import re

import pytest
import torch
import torchvision

from tests.paths import DEMO_CLASSIFICATION
from tests.tool_runs import load_script

ROW = (r'^{name}\s+params\s+([\d,]+)\s+batch 1\s+shape 32x32.*?([\d.]+) img/s\s+([\d.]+) ms/iter'
       r'\s+peak\s+([\d.]+) MiB\s+resident\s+(\d+) MiB\s+x([\d.]+) of classification img/s'
       r'\s+(\d+)% of the GEMM rate$')


def convnext_tiny_macs_by_hand(size):
    """convnext_tiny's multiply-adds at size x size, counted from its layers: every conv and
    linear layer's weights times the positions it is applied at (the stem and downsampling convs
    at stride = kernel)."""
    model = torchvision.models.convnext_tiny()
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    macs = 0
    for module, shape in sizes.items():
        positions = shape[-2] * shape[-1] if isinstance(module, torch.nn.Conv2d) else \
            shape[:-1].numel()
        macs += module.weight.numel() * positions
    return macs


# A training step's FLOPs are taken as three times the forward's (the backward's two products
# per layer); inference's are the forward's.
@pytest.mark.parametrize('mode, extra_args, passes', [
    ('inference', [], 1),
    ('train', ['--train', '--amp-dtype', 'float32'], 3),
])
def test_compare_rows_give_ratio_memory_and_gemm_share(capsys, mode, extra_args, passes):
    bench = load_script('tools/analysis_tools/benchmark.py', 'vmamba_benchmark_compare')
    assert bench.main([DEMO_CLASSIFICATION, '--compare', 'tv-convnext_tiny', '--shape', '32',
                       '32', '--device', 'cpu', '--threads', '1', '--warmup', '1', '--iters',
                       '1', '--rounds', '1', *extra_args]) == 0
    out = capsys.readouterr().out
    # every model of the run on the same allocator settings, said in the header
    assert re.search(rf'^{mode}\b.*; freed host memory (kept|not kept)', out, re.MULTILINE), out
    rate = re.search(r'^fp32 GEMM rate: ([\d.]+) GFLOP/s \(2048x2048 matmul', out, re.MULTILINE)
    assert rate is not None, out
    rate = float(rate.group(1)) * 1e9
    ours = re.search(ROW.format(name='classification'), out, re.MULTILINE)
    peer = re.search(ROW.format(name=re.escape('convnext_tiny (torchvision)')), out,
                     re.MULTILINE)
    assert ours is not None and peer is not None, out
    assert float(ours.group(6)) == 1.0
    # the ratio from the printed img/s (two decimals each, the ratio two more)
    ours_ips, peer_ips = float(ours.group(2)), float(peer.group(2))
    assert float(peer.group(6)) == pytest.approx(peer_ips / ours_ips, abs=0.01 + 0.01 / ours_ips)
    assert float(peer.group(4)) > 0 and float(ours.group(4)) > 0
    # the peer's resident memory holds at least its float32 weights, beside the step's rise
    weight_mib = sum(p.numel() for p in torchvision.models.convnext_tiny().parameters()) * 4 / 2**20
    assert int(peer.group(5)) >= weight_mib + float(peer.group(4)) - 1

    # the peer's share of the GEMM rate from its multiply-adds at 32x32, counted by hand
    share = passes * 2 * convnext_tiny_macs_by_hand(32) * peer_ips / rate
    # the printed share is rounded to a percent; ips to 0.01; the rate to 0.1 GFLOP/s
    assert int(peer.group(7)) == pytest.approx(100 * share, abs=0.6 + 100 * share * 0.01)
