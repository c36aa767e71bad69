# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""Inference (or --train) throughput of model configs, optionally against Swin-T.

Each config's model is built through mmengine (``Config.fromfile`` ->
``init_default_scope(cfg.default_scope)`` -> the scope's ``MODELS.build``),
put in eval mode and fed a random ``(B, 3, H, W)`` tensor under
``torch.inference_mode()`` with ``mode='tensor'`` (backbone + neck + head; the
data preprocessor's normalisation is not part of the timing).

All models are warmed up first; the timed iterations are then interleaved
round-robin (``--rounds`` rounds of ``--iters`` iterations per model), so
that background load hits every model alike. The reported ms/iter is the
median over rounds of each round's mean; img/s = batch / that.

Example::

    python tools/analysis_tools/benchmark.py \\
        configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py --compare swin \\
        --batch-size 1 --shape 224 224 --device cpu
"""
import argparse
import importlib
import importlib.util
import os.path as osp
import statistics
import sys
import time

import torch

SWIN_T_CONFIG = 'swin_transformer/swin-tiny_16xb64_in1k.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark the inference throughput of model configs')
    parser.add_argument('configs', nargs='+', help='config file path(s)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
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
        choices=['swin'],
        default=None,
        help='also measure mmpretrain\'s Swin-T (swin-tiny_16xb64_in1k) in '
        'the same run and print each model\'s throughput relative to it')
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
        choices=['float16', 'bfloat16'],
        default=None,
        help='autocast dtype for --train (default: float16 on cuda with a '
        'GradScaler, bfloat16 on cpu)')
    args = parser.parse_args(argv)
    for name in ('batch_size', 'iters', 'rounds'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
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


def build_model(config_path, cfg_options=None):
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config_path)
    if cfg_options:
        opts = {}
        for item in cfg_options:
            key, sep, value = item.partition('=')
            if not sep:
                raise SystemExit(
                    f'error: --cfg-options expects KEY=VALUE, got {item!r}')
            opts[key] = DictAction._parse_iterable(value)
        cfg.merge_from_dict(opts)
    scope = cfg.get('default_scope', None) or 'mmengine'
    init_default_scope(scope)
    try:
        registry = importlib.import_module(f'{scope}.registry')
        models = registry.MODELS
    except (ImportError, AttributeError):
        from mmengine.registry import MODELS as models
    model = models.build(cfg.model)
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
        with torch.autocast(device, dtype=amp_dtype):
            out = model(inputs, mode='tensor')
            out = out[-1] if isinstance(out, (tuple, list)) else out
            loss = out.float().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return step


def run_iters(step, inputs, n, device):
    if device == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step(inputs)
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)

    missing = [c for c in args.configs if not osp.isfile(c)]
    if missing:
        for c in missing:
            print(f'error: config file not found: {c}', file=sys.stderr)
        return 2

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda requested but CUDA is not available',
              file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    entries = []  # (name, config path, cfg_options)
    for c in args.configs:
        entries.append((osp.splitext(osp.basename(c))[0], c,
                        args.cfg_options))
    if args.compare == 'swin':
        swin = resolve_swin_config()
        entries.append(('swin-tiny_16xb64_in1k (mmpretrain)', swin, None))

    h, w = args.shape
    amp_dtype = getattr(torch, args.amp_dtype or
                        ('float16' if device == 'cuda' else 'bfloat16'))
    mode = (f'train (AMP {str(amp_dtype).split(".")[-1]} forward + backward + '
            'AdamW step)' if args.train else 'inference')
    print(f'{mode}; torch {torch.__version__}, device {device}'
          + (f' ({torch.cuda.get_device_name()})' if device == 'cuda' else '')
          + f', threads {threads}, batch {args.batch_size}, shape {h}x{w}, '
          f'warmup {args.warmup}, {args.rounds} rounds x {args.iters} iters '
          '(round-robin, median round)', flush=True)

    models = []
    for name, path, opts in entries:
        model = build_model(path, opts).to(device)
        n_params = sum(p.numel() for p in model.parameters())
        step = (train_step(model, device, amp_dtype) if args.train else
                inference_step(model))
        models.append(dict(name=name, step=step, params=n_params, times=[],
                           peak=0))

    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(
        args.batch_size, 3, h, w, generator=gen).to(device)

    for m in models:
        if args.warmup:
            run_iters(m['step'], inputs, args.warmup, device)
    for _ in range(args.rounds):
        for m in models:
            if device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            elapsed = run_iters(m['step'], inputs, args.iters, device)
            m['times'].append(elapsed / args.iters)
            if device == 'cuda':
                m['peak'] = max(m['peak'], torch.cuda.max_memory_allocated())

    for m in models:
        m['ms'] = statistics.median(m['times']) * 1000
        m['ips'] = args.batch_size * 1000 / m['ms']
    ref = models[-1] if args.compare == 'swin' else None

    width = max(len(m['name']) for m in models)
    for m in models:
        line = (f'{m["name"]:<{width}}  params {m["params"]:>12,}  '
                f'batch {args.batch_size}  shape {h}x{w}  device {device}  '
                f'threads {threads}  {m["ips"]:9.2f} img/s  '
                f'{m["ms"]:9.2f} ms/iter')
        if device == 'cuda':
            line += f'  peak {m["peak"] / 2**30:6.2f} GiB'
        if ref is not None:
            line += f'  x{m["ips"] / ref["ips"]:.2f} of Swin-T img/s'
        if len(args.configs) > 1 and m is not models[0] and m is not ref:
            # e.g. 2DVMamba-T after VMamba-T: what the change costs, as a time ratio.
            line += f'  x{m["ms"] / models[0]["ms"]:.2f} the time of {models[0]["name"]}'
        print(line, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
