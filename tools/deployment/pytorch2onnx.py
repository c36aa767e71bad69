#!/usr/bin/env python
# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""Export a config's model to ONNX (torch.onnx.export, dynamo=True), optionally checked in
onnxruntime against PyTorch.

Classifiers export image batch -> logits (``mode='tensor'``), segmentors image batch -> seg
logits, detectors image batch -> backbone + neck feature maps. The input is the normalised batch
(the data preprocessor's mean/std are not in the graph). VSSM backbones are exported with the
``torch`` scan backend (tensor ops, fixed 16-token chunks), whatever the config says.

Example::

    python tools/deployment/pytorch2onnx.py configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py \\
        --checkpoint vmamba_tiny_s1l8.pth --shape 224 224 --dynamic-shape --verify \\
        --output-file vmamba-tiny-s1l8.onnx

Exit codes: 0 exported (and verified), 1 --verify found a mismatch, 2 bad arguments, config or
checkpoint.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Export a model config to ONNX')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--checkpoint', help='weights to export (project or official VMamba '
                        'file); random weights when omitted')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width of the export (and of --verify)')
    parser.add_argument('--batch-size', type=int, default=1, help='batch of the export')
    parser.add_argument('--dynamic-shape', action='store_true',
                        help='one file for any input height and width')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='one file for any batch size')
    parser.add_argument('--opset', type=int, default=None,
                        help="ONNX opset (default: torch.onnx's, 18 for torch 2.14)")
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch on random inputs (exit code 1 '
                        'when they differ by more than 1e-4 of the output scale)')
    parser.add_argument('--output-file', required=True, help='the .onnx file to write')
    parser.add_argument('--threads', type=int, default=None,
                        help='onnxruntime intra-op threads for --verify')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config settings, e.g. model.head.num_classes=10')
    args = parser.parse_args(argv)
    height, width = args.shape
    if height < 1 or width < 1:
        parser.error(f'--shape must be two positive sizes, got {height} {width}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    if args.opset is not None and args.opset < 18:
        parser.error(f'--opset {args.opset}: the dynamo exporter writes opset 18 or later')
    if not args.output_file.endswith('.onnx'):
        parser.error(f'--output-file {args.output_file}: give a path ending in .onnx')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        parser.error(f'--checkpoint {args.checkpoint}: file not found')
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def smallest_vssm_input(module):
    """The largest of the smallest inputs the model's VSSMs take (1 when it has none)."""
    from vmamba_mm.models import VSSM
    return max([sub.min_input_size for sub in module.modules() if isinstance(sub, VSSM)],
               default=1)


def check_input_size(module, shape):
    """The VSSM of the model refuses inputs it cannot take; say so before tracing."""
    from vmamba_mm.deployment.onnx import ExportError
    from vmamba_mm.models import VSSM
    for sub in module.modules():
        if isinstance(sub, VSSM) and min(shape) < sub.min_input_size:
            raise ExportError(f'--shape {shape[0]} {shape[1]} is smaller than the '
                              f'{sub.min_input_size}x{sub.min_input_size} this VSSM arch takes')


def main(argv=None):
    args = parse_args(argv)
    import torch

    from vmamba_mm.deployment import onnx as deploy
    problem = deploy.output_file_problem(args.output_file)
    if problem is not None:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    shape = tuple(args.shape)
    try:
        export_model = deploy.build_export_model(args.config, args.checkpoint, args.cfg_options)
        check_input_size(export_model.module, shape)
    except deploy.ExportError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'model: {args.config} ({export_model.task}, {export_model.scope})', flush=True)
    for note in export_model.notes:
        print(f'note: {note}', flush=True)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            export_model.module(torch.randn(args.batch_size, 3, *shape))
    except ValueError as exc:
        print(f'error: the model cannot take --shape {shape[0]} {shape[1]}: {exc}',
              file=sys.stderr)
        return 2
    try:
        result = deploy.export_onnx(export_model.module, shape, args.output_file,
                                    batch_size=args.batch_size, dynamic_shape=args.dynamic_shape,
                                    dynamic_batch=args.dynamic_batch, opset=args.opset)
    except deploy.ExportError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    smallest_side = None
    if args.dynamic_shape:
        # torch.export's bound (no map of a single pixel) or the backbone's own, the larger.
        traced = result.size_range[0] if result.size_range is not None else 1
        smallest_side = max(traced, smallest_vssm_input(export_model.module))
        sizes = f'any H x W with both sides >= {smallest_side}'
    else:
        sizes = f'{shape[0]}x{shape[1]} only'
    batch = 'any batch' if args.dynamic_batch else f'batch {args.batch_size}'
    print(f'exported {result.path} in {time.perf_counter() - start:.1f} s: input '
          f'{result.input_name} (N, 3, H, W) float32 for {sizes}, {batch}; outputs '
          f'{", ".join(result.output_names)}', flush=True)
    if not args.verify:
        return 0
    session = deploy.OnnxRuntimeSession(result.path, threads=args.threads)
    cases = deploy.verification_inputs(shape, args.dynamic_shape, args.dynamic_batch,
                                       smallest_side)
    if not args.dynamic_batch and args.batch_size != 1:
        cases = [(args.batch_size, h, w) for _, h, w in cases]
    try:
        deploy.verify(export_model.module, session, cases, export_model.is_classifier,
                      report=lambda line: print(line, flush=True))
    except deploy.VerificationError as exc:
        print(f'error: verification failed at {exc}', file=sys.stderr)
        return 1
    print(f'verified: onnxruntime matches PyTorch within {deploy.RELATIVE_TOLERANCE:g} of the '
          f'output scale at {len(cases)} input(s)', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
