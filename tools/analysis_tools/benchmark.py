# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""Inference (or --train) throughput of model configs, optionally against their CPU peers.

Each config's model is built through mmengine (``Config.fromfile`` ->
``init_default_scope(cfg.default_scope)`` -> the scope's ``MODELS.build``),
put in eval mode and fed a random ``(B, 3, H, W)`` tensor under
``torch.inference_mode()`` with ``mode='tensor'`` (backbone + neck + head; the
data preprocessor's normalisation is not part of the timing).

All models are warmed up first; the timed iterations are then interleaved
round-robin (``--rounds`` rounds of ``--iters`` iterations per model), so
that background load hits every model alike. The reported ms/iter is the
median over rounds of each round's mean; img/s = batch / that.

``--shapes S [S ...]`` measures every model at each square size in turn (warm-up
and interleaved rounds per size) and also its peak memory there: on CUDA
``torch.cuda.max_memory_allocated`` over the timed rounds; on the CPU the peak
increase of the resident set (VmHWM - VmRSS, Linux) during one step, measured
in a fresh process per model and size after one warm-up step, with glibc's
mmap threshold fixed so that freed tensors leave the resident set.
``--plot PNG`` draws img/s and peak memory against the size, one line per
model; the plotted series are also stored in the PNG's ``vmamba-mm:series``
text chunk.

``--compare PEER [PEER ...]`` adds the models a user would pick instead, in the same
interleaved rounds: ``swin`` (mmpretrain's swin-tiny_16xb64_in1k), ``tv-swin_t`` and
``tv-convnext_tiny`` (torchvision's, random weights), or ``all``. Each row then also gives its
img/s relative to the first model, its memory (on the CPU, in a fresh process per model: the
resident set's rise during one step, as ``--shapes`` measures it, and the peak resident set
during that step less the process's resident set before the model was built, with the same
libraries loaded for every model: weights, oneDNN weight copies, activations and all;
``--no-onednn-copies`` turns the copies off) and the share of the machine's fp32 GEMM rate it
reaches: 2 x multiply-adds per image x img/s over the rate
of a 2048x2048 matmul timed in the same run, just before each size's rounds (with ``--train``,
three times the forward's: the backward does two products per layer). ``make bench``
compares VMamba-T with all three.

``--flops`` adds a summary after the timed rows: per model and size its parameters, its FLOPs
(multiply-adds, counted by ``vmamba_mm.analysis.flops.count_config`` as get_flops.py counts
them: on the meta device, a second or two per model) beside its img/s, and with several configs
each one's time relative to the first. ``make bench-families`` prints it for the scan families.

``--scan-floor`` adds, after each config with SS2D blocks, a row for the same
model with every scan core replaced by its skip term ``sum(D) * x``
(``vmamba_mm.analysis.scan_ablation``): not VMamba's function, but the time of
everything except the scan. The gap to the real model is what its scan costs;
the row bounds from below what any scan implementation can reach (e.g. under
``--runtime onnxruntime``).

The run keeps freed host memory in the process (``vmamba_mm.models.retain_freed_memory``, said in
the header line), for every model alike: without it glibc hands large freed blocks back to the OS
and the next tensor of that size page-faults in again. ``--release-freed-memory`` leaves glibc's
defaults.

Example::

    python tools/analysis_tools/benchmark.py \\
        configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py --compare swin \\
        --batch-size 1 --shape 224 224 --device cpu
    python tools/analysis_tools/benchmark.py \\
        configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py --compare swin \\
        --batch-size 1 --shapes 224 448 --device cpu --plot scaling.png
    python tools/analysis_tools/benchmark.py \\
        configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py \\
        configs/ssd/ssd-tiny_8xb128_in1k.py --flops --batch-size 1 --shape 224 224 --device cpu
    python tools/analysis_tools/benchmark.py \\
        configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py --compare swin \\
        --runtime onnxruntime --scan-floor --shape 224 224 --device cpu
"""
import argparse
import gc
import importlib
import importlib.util
import json
import os
import os.path as osp
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

SWIN_T_CONFIG = 'swin_transformer/swin-tiny_16xb64_in1k.py'
TORCHVISION_PREFIX = 'torchvision:'
# --compare's names -> (row name, model path: an mmpretrain config, or torchvision:<builder>)
PEERS = {
    'swin': ('swin-tiny_16xb64_in1k (mmpretrain)', None),  # path found at run time
    'tv-swin_t': ('swin_t (torchvision)', TORCHVISION_PREFIX + 'swin_t'),
    'tv-convnext_tiny': ('convnext_tiny (torchvision)', TORCHVISION_PREFIX + 'convnext_tiny'),
}
GEMM_SIDE = 2048  # the matmul whose fp32 rate is the machine's ceiling in --compare rows
# A training step's multiply-adds as a multiple of the forward's: each layer's backward does two
# products of the forward's size (the input's gradient and the weight's).
TRAIN_FLOPS_FACTOR = 3
TRAIN_FLOPS_NOTE = (f"; a training step's FLOPs taken as {TRAIN_FLOPS_FACTOR}x the forward's "
                    "(each layer's backward: two products of the forward's size)")
# Freed blocks above this size go back to the OS at once, so the resident set follows the live
# tensors; a fixed value also stops glibc from raising the threshold as blocks are freed.
PROBE_MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '4096', 'MALLOC_TRIM_THRESHOLD_': '4096'}
PROBE_RESULT_PREFIX = 'memory-probe: '
SERIES_KEY = 'vmamba-mm:series'
PROFILE_ROWS = 12  # --profile: operator types listed per model; the rest summed in one line
PROFILE_SCAN_RANGE = 'benchmark::scan'  # --profile in PyTorch: the scan cores' profiler range


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark the inference throughput of model configs')
    parser.add_argument('configs', nargs='+', help='config file path(s)')
    parser.add_argument('--batch-size', type=int, default=1)
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument(
        '--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
        help='input size (default 224 224)')
    shapes.add_argument(
        '--shapes', type=int, nargs='+', default=None, metavar='S',
        help='square input sizes to measure in turn, with peak memory at each')
    parser.add_argument(
        '--plot', default=None, metavar='PNG',
        help='draw img/s and peak memory against the input size into this PNG')
    parser.add_argument(
        '--device',
        choices=['cpu', 'cuda'],
        default=None,
        help='defaults to cuda when available, else cpu')
    parser.add_argument(
        '--warmup', type=int, default=3, help='warm-up iterations per model')
    parser.add_argument(
        '--iters',
        type=int,
        default=10,
        help='timed iterations per model in each round')
    parser.add_argument(
        '--rounds',
        type=int,
        default=5,
        help='round-robin rounds; the median round is reported')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch intra-op threads (default: torch\'s own choice)')
    parser.add_argument(
        '--compare',
        nargs='+',
        choices=[*PEERS, 'all'],
        default=None,
        metavar='PEER',
        help='also measure these peers in the same run: swin (mmpretrain\'s '
        'swin-tiny_16xb64_in1k), tv-swin_t, tv-convnext_tiny (torchvision), or all; rows then '
        'give img/s relative to the first model, peak memory and the share of the fp32 GEMM '
        'rate')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=None,
        metavar='KEY=VALUE',
        help='override settings of the given configs (not of Swin-T), '
        'e.g. model.backbone.scan_backend=torch')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time training steps instead of inference: AMP forward, backward '
        'and an AdamW step (mean of the logits as the loss)')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16', 'float32'],
        default=None,
        help='autocast dtype for --train (default: float16 on cuda with a '
        'GradScaler, bfloat16 on cpu); float32: no autocast')
    parser.add_argument(
        '--runtime',
        choices=['pytorch', 'onnxruntime'],
        default='pytorch',
        help='onnxruntime: export each model to ONNX at each size (tools/deployment/'
        'pytorch2onnx.py\'s export, the export-safe scan) and time onnxruntime CPU sessions '
        'of the files instead of PyTorch (inference only)')
    parser.add_argument(
        '--flops',
        action='store_true',
        help='also count each model\'s FLOPs (multiply-adds, as get_flops.py counts them) at '
        'each size and print a summary of parameters, GFLOPs and img/s after the timing')
    parser.add_argument(
        '--scan-floor',
        action='store_true',
        help='also time each config with SS2D blocks with its scans replaced by their skip '
        'term sum(D) * x (an ablation, not the model\'s function): the time of everything but '
        'the scan, a lower bound for any scan implementation')
    parser.add_argument(
        '--no-onednn-copies',
        action='store_true',
        help='turn off the oneDNN weight copies of the CPU inference path '
        '(vmamba_mm.models.layers.use_onednn_weight_copies(False)): less memory, more time')
    from vmamba_mm.models.host_memory import add_release_flag
    add_release_flag(parser)
    parser.add_argument(
        '--page-faults',
        action='store_true',
        help='also print each model\'s minor page faults per iteration on the CPU (getrusage, '
        'the last round): pages the allocator handed back and the model touched again')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='after the timing, run each model --iters times under the profiler and print where '
        'the time goes: in PyTorch by kind of operator (GEMM, convolution, scan, norm, '
        'element-wise, copy, other); with --runtime onnxruntime, its costliest operator types')
    # Internal: one model and shape in this (fresh) process, printing its peak memory.
    parser.add_argument('--memory-probe', action='store_true', help=argparse.SUPPRESS)
    # Internal: the probed model is --scan-floor's stand-in.
    parser.add_argument('--probe-without-scans', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ('batch_size', 'iters', 'rounds'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    if args.shapes is not None and min(args.shapes) < 1:
        parser.error(f'--shapes must be positive sizes, got {args.shapes}')
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape takes two positive sizes H W (e.g. --shape 224 224), got '
                     f'{args.shape[0]} {args.shape[1]}')
    if args.plot is not None and not args.plot.lower().endswith('.png'):
        parser.error(f'--plot writes a PNG; give a path ending in .png, got {args.plot!r}')
    if args.profile and args.device == 'cuda':
        parser.error('--profile profiles CPU operators; on a GPU, gpu_check.py\'s profile '
                     'section gives kernel time by kind')
    if args.runtime == 'onnxruntime' and (args.train or args.device == 'cuda'):
        parser.error('--runtime onnxruntime times CPU inference: drop --train / --device cuda')
    if args.compare is not None:
        args.compare = list(PEERS) if 'all' in args.compare else list(dict.fromkeys(args.compare))
        torchvision_peers = [p for p in args.compare if PEERS[p][1]]
        if args.runtime == 'onnxruntime' and torchvision_peers:
            parser.error(f'--runtime onnxruntime exports configs; the torchvision peers '
                         f'({", ".join(torchvision_peers)}) have none: use --compare swin')
    if args.memory_probe and (len(args.configs) != 1 or args.shapes):
        parser.error('--memory-probe takes one config and --shape')
    args.sizes = ([(s, s) for s in args.shapes] if args.shapes else
                  [tuple(args.shape or (224, 224))])
    return args


def resolve_swin_config():
    """Path of mmpretrain's own Swin-T ImageNet config."""
    if importlib.util.find_spec('mmpretrain') is None:
        raise SystemExit('error: --compare swin needs mmpretrain: pip install mmpretrain==1.2.0 '
                         '(or make install)')
    import mmpretrain
    path = osp.join(
        osp.dirname(mmpretrain.__file__), '.mim', 'configs', SWIN_T_CONFIG)
    if osp.isfile(path):
        return path
    # mmpretrain installed from a source checkout keeps configs at the root
    path = osp.join(
        osp.dirname(osp.dirname(mmpretrain.__file__)), 'configs',
        SWIN_T_CONFIG)
    if osp.isfile(path):
        return path
    raise SystemExit('error: cannot find mmpretrain config '
                     f'mmpretrain::{SWIN_T_CONFIG}')


def parse_cfg_options(items):
    """``--cfg-options`` KEY=VALUE strings as the dict mmengine's merge takes."""
    from mmengine.config import DictAction
    opts = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep:
            raise SystemExit(f'error: --cfg-options expects KEY=VALUE, got {item!r}')
        opts[key] = DictAction._parse_iterable(value)
    return opts


class TorchvisionPeer(torch.nn.Module):
    """A torchvision classifier (random weights) called as the configs' models are:
    ``model(inputs, mode='tensor')``."""

    def __init__(self, builder):
        super().__init__()
        import torchvision
        self.classifier = getattr(torchvision.models, builder)(weights=None)

    def forward(self, inputs, mode='tensor'):
        return self.classifier(inputs)


def peer_entries(names):
    """Benchmark entries (name, path) of --compare's peers."""
    entries = []
    for peer in names:
        name, path = PEERS[peer]
        entries.append(dict(name=name, path=path or resolve_swin_config(), opts=None,
                            without_scans=False, peer=True))
    return entries


def build_model(config_path, cfg_options=None):
    """The config's model in eval mode, with the config's data preprocessor (as the runner
    gives it one: the top-level ``data_preprocessor`` unless the model names its own); for a
    ``torchvision:<builder>`` path, that torchvision model."""
    if config_path.startswith(TORCHVISION_PREFIX):
        return TorchvisionPeer(config_path[len(TORCHVISION_PREFIX):]).eval()
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config_path)
    if cfg_options:
        cfg.merge_from_dict(parse_cfg_options(cfg_options))
    scope = cfg.get('default_scope', None) or 'mmengine'
    init_default_scope(scope)
    try:
        registry = importlib.import_module(f'{scope}.registry')
        models = registry.MODELS
    except (ImportError, AttributeError):
        from mmengine.registry import MODELS as models
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = models.build(model_cfg)
    model.eval()
    return model


def inference_step(model):
    def step(inputs):
        with torch.inference_mode():
            model(inputs, mode='tensor')
    return step


def train_step(model, device, amp_dtype):
    """One AMP training step: forward under autocast, backward, AdamW step."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16)

    def step(inputs):
        with torch.autocast(device, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            out = model(inputs, mode='tensor')
            out = out[-1] if isinstance(out, (tuple, list)) else out
            loss = out.float().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return step


def gemm_rate(device, side=GEMM_SIDE, repeats=5):
    """fp32 multiply-add rate of a side x side matmul on ``device`` (FLOP/s, 2 per
    multiply-add): the best of ``repeats`` timed runs of 3 products each, after one warm-up."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(side, side, generator=gen).to(device)
    b = torch.randn(side, side, generator=gen).to(device)
    run_iters(lambda x: x @ b, a, 1, device)
    best = min(run_iters(lambda x: x @ b, a, 3, device) / 3 for _ in range(repeats))
    return 2 * side ** 3 / best


def run_iters(step, inputs, n, device):
    if device == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step(inputs)
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def random_inputs(batch_size, size, device):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, 3, *size, generator=gen).to(device)


def minor_page_faults():
    """The process's minor page faults so far (getrusage), or None where it cannot tell."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_round_robin(models, inputs, args, device):
    """Warm every model up on ``inputs``, then time them interleaved; returns, per model, the
    median round's ms/iter, (CUDA) the peak allocated bytes and (with --page-faults, on the CPU)
    the minor page faults per iteration of the last round."""
    for m in models:
        if args.warmup:
            run_iters(m['step'], inputs, args.warmup, device)
    times = [[] for _ in models]
    peaks = [None] * len(models)
    faults = [None] * len(models)
    count_faults = args.page_faults and device == 'cpu'
    for _ in range(args.rounds):
        for i, m in enumerate(models):
            if device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            before = minor_page_faults() if count_faults else None
            elapsed = run_iters(m['step'], inputs, args.iters, device)
            times[i].append(elapsed / args.iters)
            if before is not None:
                faults[i] = (minor_page_faults() - before) / args.iters
            if device == 'cuda':
                peaks[i] = max(peaks[i] or 0, torch.cuda.max_memory_allocated())
    return [statistics.median(t) * 1000 for t in times], peaks, faults


def _proc_status_kib(field):
    with open('/proc/self/status') as status:
        match = re.search(rf'^{field}:\s+(\d+) kB', status.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f'/proc/self/status has no {field} line')
    return int(match.group(1))


def cpu_peak_memory_increase(step, inputs):
    """Bytes the resident set rises above its level before one call of ``step`` (Linux).

    The high-water mark is reset by writing 5 to /proc/self/clear_refs. Returns None where
    /proc cannot tell (not Linux)."""
    gc.collect()
    try:
        before = _proc_status_kib('VmRSS')
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
    except OSError:
        return None
    step(inputs)
    return max(_proc_status_kib('VmHWM') - before, 0) * 1024


def memory_probe(args):
    """--memory-probe: one warm-up step, then the peak RSS increase of one more step and the
    peak RSS during it above the process's RSS before the model was built."""
    device = args.device or 'cpu'
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # the same libraries loaded for every model, so that the baseline below is the same
    for library in ('torchvision', 'mmengine', 'mmpretrain', 'vmamba_mm'):
        if importlib.util.find_spec(library) is not None:
            importlib.import_module(library)
    gc.collect()
    before_model = _proc_status_kib('VmRSS') * 1024
    model = build_model(args.configs[0], args.cfg_options).to(device)
    if args.probe_without_scans:
        from vmamba_mm.analysis.scan_ablation import remove_scans
        remove_scans(model)
    step = make_step(model, args, device)
    inputs = random_inputs(args.batch_size, args.sizes[0], device)
    step(inputs)
    peak = cpu_peak_memory_increase(step, inputs)
    # the high-water mark was reset just before the step: the process's peak during it, less
    # what the process held before the model was built
    resident = None if peak is None else _proc_status_kib('VmHWM') * 1024 - before_model
    print(PROBE_RESULT_PREFIX + json.dumps({'peak_bytes': peak, 'resident_bytes': resident}),
          flush=True)
    return 0


def probe_cpu_memory(entry, size, args):
    """Run ``--memory-probe`` for one model and size in a fresh process: (the resident set's
    rise during one step, the process's peak resident set during it), bytes or None."""
    path, opts = entry['path'], entry['opts']
    command = [sys.executable, osp.abspath(__file__), path, '--memory-probe', '--device', 'cpu',
               '--batch-size', str(args.batch_size), '--shape', str(size[0]), str(size[1])]
    if entry['without_scans']:
        command.append('--probe-without-scans')
    if args.threads is not None:
        command += ['--threads', str(args.threads)]
    if args.train:
        command += ['--train'] + (['--amp-dtype', args.amp_dtype] if args.amp_dtype else [])
    if args.no_onednn_copies:
        command.append('--no-onednn-copies')
    if opts:
        command += ['--cfg-options', *opts]
    env = dict(os.environ, **PROBE_MALLOC_ENV)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(PROBE_RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise SystemExit(f'error: the memory probe of {path} at {size[0]}x{size[1]} failed '
                         f'(exit {result.returncode}):\n{result.stderr[-2000:]}')
    result = json.loads(lines[-1][len(PROBE_RESULT_PREFIX):])
    return result['peak_bytes'], result['resident_bytes']


def onnxruntime_steps(entries, size, args, out_dir):
    """One onnxruntime session step (and its file) per entry (a model's name, path, opts and
    without_scans), each model exported at ``size`` (fixed shape)."""
    from vmamba_mm.deployment.onnx import OnnxRuntimeSession, export_for_benchmark
    steps = []
    for entry in entries:
        start = time.perf_counter()
        opts = entry['opts']
        onnx_path, _ = export_for_benchmark(
            entry['path'], shape=size, batch_size=args.batch_size, out_dir=out_dir,
            cfg_options=parse_cfg_options(opts) if opts else None,
            without_scans=entry['without_scans'])
        print(f'{entry["name"]}: exported to {onnx_path} in {time.perf_counter() - start:.0f} s',
              flush=True)
        session = OnnxRuntimeSession(onnx_path, threads=args.threads)
        steps.append((lambda inputs, session=session: session(inputs), onnx_path))
    return steps


def print_operator_profile(models, inputs, args):
    """--profile: each model's costliest onnxruntime operator types, per run."""
    from vmamba_mm.deployment.onnx import profile_operators
    for m in models:
        rows, run_ms = profile_operators(m['onnx_path'], inputs.numpy(), runs=args.iters,
                                         threads=args.threads)
        print(f'\n{m["name"]}: onnxruntime operator types, ms per run under the profiler '
              f'({args.iters} runs; {run_ms:.2f} ms per profiled run)')
        for row in rows[:PROFILE_ROWS]:
            print(f'  {row.op_type:<24} {row.ms_per_run:9.2f} ms  {row.nodes_per_run:7.0f} nodes')
        rest = rows[PROFILE_ROWS:]
        if rest:
            print(f'  {f"{len(rest)} other types":<24} {sum(r.ms_per_run for r in rest):9.2f} ms  '
                  f'{sum(r.nodes_per_run for r in rest):7.0f} nodes')


def print_kind_profile(models, inputs, args):
    """--profile in PyTorch: each model's operator self time per run by kind (gpu_check.py's
    kinds; the scan cores' own operators count as scan) and its costliest operators."""
    from vmamba_mm.analysis.device_check import profile_scan_cores, time_by_kind
    for m in models:
        profile_scan_cores(m['model'], PROFILE_SCAN_RANGE)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            run_iters(m['step'], inputs, args.iters, 'cpu')
            run_ms = (time.perf_counter() - start) * 1000 / args.iters
        summary = time_by_kind(prof.events(), PROFILE_SCAN_RANGE, 'cpu', top=PROFILE_ROWS)
        print(f'\n{m["name"]}: operator self time by kind, ms per run under the profiler '
              f'({args.iters} runs; {run_ms:.2f} ms per profiled run)')
        total = summary['total_ms'] or 1.0
        for kind, ms in sorted(summary['by_kind_ms'].items(), key=lambda item: -item[1]):
            if ms > 0:
                print(f'  {kind:<14} {ms / args.iters:9.2f} ms  {ms / total:4.0%}')
        print('  costliest operators:')
        for entry in summary['top']:
            print(f'  {entry["ms"] / args.iters:9.2f} ms  {entry["calls"] / args.iters:6.0f} '
                  f'calls  {entry["kind"]:<14} {entry["name"][:70]}')


def make_step(model, args, device):
    amp_dtype = getattr(torch, args.amp_dtype or
                        ('float16' if device == 'cuda' else 'bfloat16'))
    return (train_step(model, device, amp_dtype) if args.train else
            inference_step(model))


def plot_scaling(rows, path, title):
    """Two panels, img/s and peak memory (MiB) against the input size, one line per model.

    rows: dicts with name, size (H), ips and peak (bytes or None). The series are read back from
    the drawn lines into the PNG's text chunk ``vmamba-mm:series``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    names = list(dict.fromkeys(r['name'] for r in rows))
    fig, (ax_speed, ax_memory) = plt.subplots(1, 2, figsize=(10, 4))
    for name in names:
        own = [r for r in rows if r['name'] == name]
        ax_speed.plot([r['size'] for r in own], [r['ips'] for r in own], 'o-', label=name)
        with_peak = [r for r in own if r['peak'] is not None]
        ax_memory.plot([r['size'] for r in with_peak], [r['peak'] / 2**20 for r in with_peak],
                       'o-', label=name)
    sizes = sorted({r['size'] for r in rows})
    for ax, label in ((ax_speed, 'img/s'), (ax_memory, 'peak memory (MiB)')):
        ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.yaxis.set_major_formatter(FormatStrFormatter('%g'))
        ax.yaxis.set_minor_formatter(FormatStrFormatter('%g'))
        ax.tick_params(axis='y', which='minor', labelsize=7)
        ax.set_xticks(sizes, [f'{s}²' for s in sizes])
        ax.set_xlabel('input size')
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(True, which='both', alpha=0.3)
    ax_speed.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    series = {}
    for ax in (ax_speed, ax_memory):
        series[ax.get_title()] = {
            line.get_label(): [[float(x), float(y)] for x, y in zip(line.get_xdata(),
                                                                     line.get_ydata())]
            for line in ax.get_lines()}
    fig.savefig(path, dpi=100, metadata={SERIES_KEY: json.dumps(series)})
    plt.close(fig)


def size_problem(model, name, args):
    """Why a size of --shape/--shapes is too small for the model (named before any timing), or
    None."""
    from vmamba_mm.models.backbones.vssm import smallest_input_side
    smallest = smallest_input_side(model)
    too_small = [f'{h}x{w}' for h, w in args.sizes if smallest is not None and
                 min(h, w) < smallest]
    if not too_small:
        return None
    flag, form = ('--shapes', 'S [S ...]') if args.shapes else ('--shape', 'H W')
    return (f'{flag}: {name} takes images of at least {smallest}x{smallest}, not '
            f'{", ".join(too_small)}; give {flag} {form} with each size at least {smallest}.')


def count_model_flops(models, sizes):
    """Multiply-adds per image of each model (not the --scan-floor stand-ins) at each size, by
    get_flops.py's counter: {(name, (h, w)): macs}, or a one-line error message."""
    from vmamba_mm.analysis.flops import CountingError, count_config, count_macs
    from vmamba_mm.config import ConfigError
    macs = {}
    for m in models:
        if m['without_scans']:
            continue
        opts = parse_cfg_options(m['opts']) if m['opts'] else None
        for size in sizes:
            if m['path'].startswith(TORCHVISION_PREFIX):
                model, image = build_model(m['path']), torch.zeros(1, 3, *size)
                count, _ = count_macs(model, lambda model=model, image=image: model(image),
                                      'cpu')
                macs[(m['name'], size)] = count.total
                continue
            try:
                # get_flops.py's default device: meta (shapes only), the CPU for detectors.
                result = count_config(m['path'], size, opts)
            except (ConfigError, CountingError) as exc:
                return f'--flops: {m["name"]}: {exc}'
            macs[(m['name'], size)] = result.count.total
    return macs


def print_flops_summary(rows, args, device, threads, width):
    """--flops: parameters, FLOPs and throughput per model and size, one line each."""
    from vmamba_mm.analysis.flops import format_flops
    relative = len(args.configs) > 1
    print(f'\nsummary (batch {args.batch_size}, device {device}, threads {threads}; params: '
          'sum of the model\'s parameters; FLOPs: multiply-adds per image, as get_flops.py '
          'counts them' + ('; time: ms/iter relative to the first config' if relative else '')
          + ')')
    print(f'{"model":<{width}}  {"shape":>9}  {"params":>12}  {"FLOPs":>9}  {"img/s":>9}  '
          f'{"ms/iter":>9}' + (f'  {"time":>6}' if relative else ''))
    for row in rows:
        if row['macs'] is None:  # a --scan-floor stand-in: not the model's function
            continue
        line = (f'{row["name"]:<{width}}  {row["shape"]:>9}  {row["params"]:>12,}  '
                f'{format_flops(row["macs"]):>9}  {row["ips"]:9.2f}  {row["ms"]:9.2f}')
        if relative:
            line += f'  x{row["ms"] / row["first_ms"]:.2f}'
        print(line)


def main(argv=None):
    args = parse_args(argv)

    missing = [c for c in args.configs
               if not osp.isfile(c) and not c.startswith(TORCHVISION_PREFIX)]
    if missing:
        for c in missing:
            print(f'error: config file not found: {c}', file=sys.stderr)
        return 2
    if args.no_onednn_copies:
        from vmamba_mm.models.layers import use_onednn_weight_copies
        use_onednn_weight_copies(False)
    if args.memory_probe:
        return memory_probe(args)
    # After the probe's branch: its child keeps its own thresholds (PROBE_MALLOC_ENV).
    from vmamba_mm.models.host_memory import keep_unless_released
    host_memory = keep_unless_released(args.release_freed_memory)

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda requested but CUDA is not available',
              file=sys.stderr)
        return 2
    if args.plot is not None and not osp.isdir(osp.dirname(osp.abspath(args.plot))):
        print(f'error: --plot {args.plot}: folder {osp.dirname(osp.abspath(args.plot))} does '
              'not exist', file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    entries = []
    for c in args.configs:
        entries.append(dict(name=osp.splitext(osp.basename(c))[0], path=c,
                            opts=args.cfg_options, without_scans=False))
    if args.compare:
        entries += peer_entries(args.compare)

    amp_dtype = getattr(torch, args.amp_dtype or
                        ('float16' if device == 'cuda' else 'bfloat16'))
    precision = ('fp32' if amp_dtype == torch.float32 else
                 f'AMP {str(amp_dtype).split(".")[-1]}')
    mode = (f'train ({precision} forward + backward + AdamW step)' if args.train else
            'inference')
    shapes = ', '.join(f'{h}x{w}' for h, w in args.sizes)
    if args.runtime == 'onnxruntime':
        import onnxruntime
        mode += f' in onnxruntime {onnxruntime.__version__} (CPU, exported graphs)'
    print(f'{mode}; torch {torch.__version__}, device {device}'
          + (f' ({torch.cuda.get_device_name()})' if device == 'cuda' else '')
          + f', threads {threads}, batch {args.batch_size}, '
          f'shape{"s" if len(args.sizes) > 1 else ""} {shapes}, '
          f'warmup {args.warmup}, {args.rounds} rounds x {args.iters} iters '
          f'(round-robin, median round); {host_memory}', flush=True)

    models = []  # one per entry, in order; a --scan-floor row right after its model
    for entry in entries:
        model = build_model(entry['path'], entry['opts']).to(device)
        problem = size_problem(model, entry['name'], args)
        if problem is not None:
            print(f'error: {problem}', file=sys.stderr)
            return 2
        n_params = sum(p.numel() for p in model.parameters())
        models.append(dict(entry, params=n_params, model=model,
                           step=make_step(model, args, device)))
        if args.scan_floor and entry['path'] in args.configs:
            from vmamba_mm.analysis.scan_ablation import remove_scans
            floor_model = build_model(entry['path'], entry['opts']).to(device)
            if remove_scans(floor_model) == 0:
                print(f'--scan-floor: {entry["name"]} has no SS2D block; no row without scans',
                      flush=True)
                continue
            models.append(dict(entry, name=f'{entry["name"]} [scans removed]',
                               without_scans=True, real=models[-1], params=n_params,
                               model=floor_model, step=make_step(floor_model, args, device)))

    macs = {}
    if args.flops or args.compare:
        macs = count_model_flops(models, args.sizes)
        if isinstance(macs, str):
            print(f'error: {macs}', file=sys.stderr)
            return 2

    measure_memory = args.shapes is not None or args.compare is not None
    rows = []
    width = max(len(m['name']) for m in models)
    first = models[0]
    onnx_dir = tempfile.mkdtemp(prefix='vmamba_bench_onnx_') if args.runtime == 'onnxruntime' \
        else None
    for size in args.sizes:
        h, w = size
        if onnx_dir is not None:
            for m, (step, onnx_path) in zip(models,
                                             onnxruntime_steps(models, size, args, onnx_dir)):
                m['step'], m['onnx_path'] = step, onnx_path
        inputs = random_inputs(args.batch_size, size, device)
        rate = gemm_rate(device) if args.compare else None
        if rate is not None:
            print(f'fp32 GEMM rate: {rate / 1e9:.1f} GFLOP/s ({GEMM_SIDE}x{GEMM_SIDE} matmul, '
                  f'best of 5)' + (TRAIN_FLOPS_NOTE if args.train else ''), flush=True)
        ms, peaks, faults = time_round_robin(models, inputs, args, device)
        residents = [None] * len(models)
        if measure_memory and device == 'cpu' and onnx_dir is None:
            peaks, residents = zip(*[probe_cpu_memory(m, size, args) for m in models])
        shape_rows = [dict(name=m['name'], size=h, shape=f'{h}x{w}', ms=t,
                           ips=args.batch_size * 1000 / t, peak=peak, resident=resident,
                           params=m['params'], macs=macs.get((m['name'], size)),
                           first_ms=ms[0])
                      for m, t, peak, resident in zip(models, ms, peaks, residents)]
        for m, row, fault_count in zip(models, shape_rows, faults):
            line = (f'{m["name"]:<{width}}  params {m["params"]:>12,}  '
                    f'batch {args.batch_size}  shape {h}x{w}  device {device}  '
                    f'threads {threads}  {row["ips"]:9.2f} img/s  '
                    f'{row["ms"]:9.2f} ms/iter')
            if fault_count is not None:
                line += f'  {fault_count:9.0f} page faults/iter'
            if row['peak'] is not None:
                line += f'  peak {row["peak"] / 2**20:9.1f} MiB'
            if row['resident'] is not None:
                line += f'  resident {row["resident"] / 2**20:7.0f} MiB'
            if rate is not None:
                line += f'  x{row["ips"] / shape_rows[0]["ips"]:.2f} of {first["name"]} img/s'
                if row['macs'] is not None:
                    flops = 2 * row['macs'] * (TRAIN_FLOPS_FACTOR if args.train else 1)
                    line += f'  {flops * row["ips"] / rate:.0%} of the GEMM rate'
            if m['without_scans']:
                real_ms = shape_rows[models.index(m['real'])]['ms']
                line += (f'  x{row["ms"] / real_ms:.2f} the time of {m["real"]["name"]} '
                         f'(its scans: {real_ms - row["ms"]:.2f} ms/iter)')
            elif len(args.configs) > 1 and m is not first and not m.get('peer'):
                # e.g. 2DVMamba-T after VMamba-T: what the change costs, as a time ratio.
                line += f'  x{row["ms"] / shape_rows[0]["ms"]:.2f} the time of {first["name"]}'
            print(line, flush=True)
        rows += shape_rows
        if args.profile and onnx_dir is not None:
            print_operator_profile(models, inputs.cpu(), args)
        elif args.profile:
            print_kind_profile(models, inputs, args)
        del inputs

    if args.shapes is not None:
        memory_kind = ('peak allocated (torch.cuda.max_memory_allocated)' if device == 'cuda'
                       else 'peak RSS increase during one step, fresh process per model and size')
        print(f'\nscaling (batch {args.batch_size}; memory: {memory_kind})')
        print(f'{"model":<{width}}  {"shape":>9}  {"img/s":>9}  {"ms/iter":>9}  '
              f'{"peak MiB":>9}')
        for row in rows:
            peak = 'n/a' if row['peak'] is None else f'{row["peak"] / 2**20:.2f}'
            print(f'{row["name"]:<{width}}  {row["shape"]:>9}  {row["ips"]:9.2f}  '
                  f'{row["ms"]:9.2f}  {peak:>9}')
    if args.flops:
        print_flops_summary(rows, args, device, threads, width)
    if onnx_dir is not None:
        shutil.rmtree(onnx_dir)
    if args.plot is not None:
        title = (f'{mode}, batch {args.batch_size}, {device}, {threads} '
                 f'thread{"s" if threads != 1 else ""}; memory: '
                 + ('peak allocated' if device == 'cuda' else 'peak RSS increase per step'))
        plot_scaling(rows, args.plot, title)
        print(f'plot written to {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
