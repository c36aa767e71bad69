#!/usr/bin/env python
# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""FLOPs and parameters of any vmamba-mm config, counted as the official VMamba tables count them.

The config's model (classifier, Mask R-CNN, UperNet, demos; the task comes from its
``default_scope``) runs ``mode='tensor'`` on one image of ``--shape`` (default: the size the
official tables used, 224x224, 1280x800 or 512x2048 by task) under
``vmamba_mm.analysis.flops.count_macs``: FLOPs are multiply-adds (fvcore's convention), every scan
counted by the rule 9*B*L*D*N + B*D*L whatever scan backend the config names.

Classifiers and segmentors are counted on the ``meta`` device (shapes only: no data, no compute,
no compiled kernel); detectors run on the CPU with random weights and a random image, because
their RPN keeps proposals by NMS over real scores.

Example::

    python tools/analysis_tools/get_flops.py configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py
    python tools/analysis_tools/get_flops.py \\
        configs/mask_rcnn/mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco.py --table
"""
import argparse
import os.path as osp
import sys
import textwrap
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Count the FLOPs (multiply-adds) and parameters of a config\'s model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=None, metavar='SIZE',
        help='input size: H W, or S for S x S (default: 224 224 for classifiers, 1280 800 for '
        'detectors, 512 2048 for segmentors: the official tables\' sizes)')
    parser.add_argument(
        '--device', choices=['meta', 'cpu', 'cuda'], default=None,
        help='where the model runs while counted (default: meta, shapes only; cpu for '
        'detectors, whose proposals need real scores)')
    parser.add_argument('--table', action='store_true',
                        help='also print FLOPs and parameters per module, and per operator')
    parser.add_argument('--depth', type=int, default=3,
                        help='deepest module level in --table (backbone.layers.0 is 3)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override settings of the config, e.g. model.backbone.arch=tiny-s2l5')
    args = parser.parse_args(argv)
    if args.shape is not None:
        if len(args.shape) > 2:
            parser.error(f'--shape takes H W or one size S, got {len(args.shape)} values')
        if min(args.shape) < 1:
            parser.error(f'--shape must be positive, got {args.shape}')
        args.shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1)
    if args.depth < 0:
        parser.error('--depth must be >= 0')
    return args


def main(argv=None):
    args = parse_args(argv)
    from vmamba_mm.analysis.flops import (COUNTING_RULE, CountingError, count_config,
                                          format_flops, format_size, format_table, module_table)
    from vmamba_mm.config import ConfigError
    start = time.perf_counter()
    try:
        result = count_config(args.config, args.shape, args.cfg_options, args.device)
    except (ConfigError, CountingError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start

    count = result.count
    if args.table:
        print(format_table(module_table(result.model, count, args.depth)))
        print()
        print('per operator:')
        for label, macs in sorted(count.by_operator.items(), key=lambda item: -item[1]):
            print(f'  {label:<40} {format_flops(macs):>10}  {100 * macs / count.total:6.2f}%')
        print()
    split_line = '=' * 30
    print(f'{split_line}\nInput shape: {result.input_shape}\nFlops: {format_flops(count.total)}\n'
          f'Params: {format_size(result.params)}\n{split_line}')
    where = ('meta tensors (shapes only)' if result.device == 'meta' else
             f'{result.device} tensors, random weights and image')
    print(f'Counted: {result.covers}; batch 1, on {where}, in {seconds:.1f} s.')
    print(textwrap.fill(COUNTING_RULE, 100))
    for note in result.notes:
        print(f'Note: {note}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
