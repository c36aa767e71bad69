#!/usr/bin/env python
"""Time each selective-scan backend (and cross-scan) on given shapes; print ms and GB/s.

With ``--grid H W`` the 2D selective scan (2DMamba) is timed too, on that grid (L = H * W),
beside the 1D scan of the same tokens: the same bytes move, so the GB/s compare directly.

``--operation ssd_scan`` times Mamba2's SSD scan instead, on (batch, L, dim / headdim heads,
headdim) with B and C of ``--groups`` groups and ``--state`` states, in chunks of ``--chunk``.

GB/s counts the bytes a kernel must move at the least: its inputs read once and its outputs
written once (forward: u, delta, B, C in, y out; forward+backward adds dy in and du, ddelta, dB,
dC out, with the forward's inputs read again). On a GPU the figure is also shown as a share of the
device's memory bandwidth (--bandwidth-gbs, default: H100 SXM's 3350).

Example (VMamba-T stage 1 at batch 128)::

    python tools/analysis_tools/bench_scan.py --batch 128 --dim 384 --length 3136 --state 1 \\
        --groups 4 --device cuda --dtype bfloat16

ssd-tiny's stage 1 (four routes of 6 heads of 16 channels, N = 64) at batch 128::

    python tools/analysis_tools/bench_scan.py --operation ssd_scan --batch 512 --dim 96 \
        --headdim 16 --length 3136 --state 64 --groups 1 --device cuda --dtype bfloat16

and the 2D scan against the 1D one at the same stage, on the CPU::

    python tools/analysis_tools/bench_scan.py --batch 1 --dim 384 --grid 56 56 --state 1 \\
        --groups 4 --device cpu
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import vmamba_kernels  # noqa: E402
from vmamba_kernels.common.cases import examples_of  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--operation', default='selective_scan',
                        choices=['selective_scan', 'ssd_scan'])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--dim', type=int, default=384, help='channels (4 routes x d_inner)')
    parser.add_argument('--length', type=int, default=3136)
    parser.add_argument('--grid', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='also time the 2D scan on this grid (sets --length to H * W)')
    parser.add_argument('--state', type=int, default=1)
    parser.add_argument('--headdim', type=int, default=64, help='ssd_scan: channels per head')
    parser.add_argument('--chunk', type=int, default=64, help='ssd_scan: chunk length')
    parser.add_argument('--groups', type=int, default=4)
    parser.add_argument('--dtype', default='float32',
                        choices=['float32', 'float16', 'bfloat16'])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--backends', nargs='+', default=None,
                        help='default: every available backend but the reference')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--bandwidth-gbs', type=float, default=3350.0)
    return parser.parse_args(argv)


def timed(fn, iters, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_timings(backend, forward, train_step, fwd_bytes, bwd_bytes, args):
    """One line each for the forward and forward + backward: ms and GB/s (and on a GPU the share
    of its bandwidth)."""
    for label, fn, nbytes in (('fwd', forward, fwd_bytes), ('fwd+bwd', train_step, bwd_bytes)):
        sec = timed(fn, args.iters, args.device)
        gbs = nbytes / sec / 1e9
        share = (f'  {100 * gbs / args.bandwidth_gbs:5.1f}% of {args.bandwidth_gbs:.0f} GB/s'
                 if args.device == 'cuda' else '')
        print(f'  {backend:9s} {label:8s} {sec * 1e3:9.3f} ms  {gbs:8.1f} GB/s{share}')


def available(operation, device, backend):
    """Whether ``backend`` runs ``operation`` here; prints why not."""
    try:
        vmamba_kernels.resolve(operation, device, backend)
    except (RuntimeError, ValueError) as exc:
        print(f'  {backend:9s} skipped: {exc}')
        return False
    return True


def time_ssd_scan(args):
    """--operation ssd_scan: each backend's forward and forward + backward."""
    dev, dtype = args.device, getattr(torch, args.dtype)
    if args.dim % args.headdim:
        raise SystemExit(f'error: --dim {args.dim} is not a multiple of --headdim '
                         f'{args.headdim}')
    heads = args.dim // args.headdim
    shape = (args.batch, args.length, heads, args.headdim, args.state, args.groups, args.chunk)
    tensors, kwargs = examples_of('ssd_scan').make(shape, dtype=dtype, initial_states=False)
    tensors = {k: t.to(dev) for k, t in tensors.items()}
    kwargs = dict(kwargs, D=kwargs['D'].to(dev), dt_bias=kwargs['dt_bias'].to(dev),
                  return_final_states=False)
    size = tensors['x'].element_size()
    tokens = args.batch * args.length
    x_bytes, dt_bytes = tokens * args.dim * size, tokens * heads * size
    bc_bytes = tokens * args.groups * args.state * size
    # forward: x, dt, B, C in, y (float32) out; backward: dy in, the forward's inputs again, and
    # their gradients out.
    fwd_bytes = x_bytes + dt_bytes + 2 * bc_bytes + tokens * args.dim * 4
    bwd_bytes = fwd_bytes + tokens * args.dim * 4 + 2 * (x_bytes + dt_bytes + 2 * bc_bytes)
    print(f'ssd_scan batch {args.batch} L {args.length} heads {heads} headdim {args.headdim} '
          f'N {args.state} groups {args.groups} chunk {args.chunk} {args.dtype} on {dev}')
    for name in args.backends or [x for x in vmamba_kernels.available_backends('ssd_scan')
                                  if x != 'reference']:
        if not available('ssd_scan', dev, name):
            continue

        def forward(name=name):
            with torch.no_grad():
                vmamba_kernels.ssd_scan(**tensors, **kwargs, backend=name)

        leaves = {k: t.clone().requires_grad_(k in ('x', 'dt', 'B', 'C'))
                  for k, t in tensors.items()}

        def train_step(name=name, leaves=leaves):
            y = vmamba_kernels.ssd_scan(**leaves, **kwargs, backend=name)
            y.backward(torch.ones_like(y))

        print_timings(name, forward, train_step, fwd_bytes, bwd_bytes, args)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.operation == 'ssd_scan':
        return time_ssd_scan(args)
    dtype = getattr(torch, args.dtype)
    dev = args.device
    b, d, length, n, g = args.batch, args.dim, args.length, args.state, args.groups
    if args.grid is not None:
        length = args.grid[0] * args.grid[1]
    # The operations' own example inputs (their cases.py), at the shape asked for.
    tensors, _ = examples_of('selective_scan').make((b, d, length, n, g), dtype=dtype)
    u, delta, A, B, C, D, bias = (t.to(dev) for t in tensors.values())
    size = u.element_size()
    seq = b * d * length * size
    bc = b * g * n * length * size
    fwd_bytes = 2 * seq + 2 * bc + b * d * length * 4
    bwd_bytes = fwd_bytes + b * d * length * 4 + 2 * seq + 2 * bc + 2 * bc * 4 // size
    operations = [('selective_scan', vmamba_kernels.selective_scan, {})]
    if args.grid is not None:
        height, width = args.grid
        operations.append(('selective_scan_2d', vmamba_kernels.selective_scan_2d,
                           dict(height=height, width=width)))
    for operation, scan, grid in operations:
        print(f'{operation} batch {b} dim {d} L {length} N {n} groups {g} {args.dtype} on {dev}'
              + (f' grid {grid["height"]}x{grid["width"]}' if grid else ''))
        backends = args.backends or [x for x in vmamba_kernels.available_backends(operation)
                                     if x != 'reference']
        for name in backends:
            if not available(operation, dev, name):
                continue

            def forward(name=name, scan=scan, grid=grid):
                with torch.no_grad():
                    scan(u, delta, A, B, C, D, bias, True, out_dtype=torch.float32,
                         backend=name, **grid)

            leaves = [t.clone().requires_grad_() for t in (u, delta, B, C)]

            def train_step(name=name, leaves=leaves, scan=scan, grid=grid):
                y = scan(leaves[0], leaves[1], A, leaves[2], leaves[3], D, bias, True,
                         out_dtype=torch.float32, backend=name, **grid)
                y.backward(torch.ones_like(y))

            print_timings(name, forward, train_step, fwd_bytes, bwd_bytes, args)
    side = int(length**0.5)
    x = examples_of('cross_scan').make((b, d // 4, side, length // side), dtype=dtype)[0]['x']
    x = x.to(dev)
    sec = timed(lambda: vmamba_kernels.cross_scan(x), args.iters, dev)
    nbytes = x.numel() * size * 5
    print(f'  cross_scan {tuple(x.shape)}: {sec * 1e3:.3f} ms  {nbytes / sec / 1e9:.1f} GB/s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
