#!/usr/bin/env python
"""Convert an official VMamba checkpoint into a vmamba-mm checkpoint.

The output is ``{'state_dict': ..., 'meta': {...}}`` (torch.save), loadable by mmengine
(``load_from``, ``init_cfg=dict(type='Pretrained', checkpoint=...)``) into the project's
mmpretrain classifiers (``backbone.*``, ``backbone.outnorm{last}.*``, ``head.fc.*``) or, for
official detection/segmentation files, into the mmdet/mmseg models (``backbone.*`` and
neck/head keys as they are).
"""
import argparse
import os
import os.path as osp
import sys
from collections import Counter

# run from a checkout without installing the package
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

DESCRIPTION = (
    'Convert an official VMamba checkpoint (classification: model / model_ema; detection or '
    'segmentation: state_dict; or a bare state dict) to the key layout of vmamba-mm. '
    'SAFETY: the input is read with a restricted unpickler that never runs code from the file: '
    'tensors and plain containers load, objects of other classes (such as the yacs config '
    'stored in official files) become inert placeholders, and a file whose pickle tries to call '
    'anything outside the allow-list is refused.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument('src', metavar='IN', help='official checkpoint (.pth)')
    parser.add_argument('dst', metavar='OUT', help='where to write the converted checkpoint')
    parser.add_argument('--ema', action='store_true',
                        help="convert the EMA weights ('model_ema') instead of 'model'")
    parser.add_argument('--task', default='auto',
                        choices=['auto', 'classification', 'cls', 'det', 'seg', 'dense'],
                        help='key layout of the input; auto: detection/segmentation when keys '
                        'start with "backbone.", classification otherwise (default: auto)')
    return parser.parse_args(argv)


def _group(key: str) -> str:
    parts = key.split('.')
    if parts[0] == 'backbone' and len(parts) > 2:
        return '.'.join(parts[:2])
    if parts[0] == 'head' and len(parts) > 2:
        return '.'.join(parts[:2])
    return parts[0]


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.src):
        print(f'error: input checkpoint not found: {args.src}', file=sys.stderr)
        return 2
    # imported here so that --help and argument errors answer without loading torch
    import torch

    from vmamba_mm.checkpoint import (CheckpointContentError, UnsafeCheckpointError,
                                      convert_official_state_dict, load_official_state_dict)
    try:
        sd = load_official_state_dict(args.src, use_ema=args.ema)
        converted, mapping = convert_official_state_dict(sd, task=args.task, return_mapping=True)
    except (CheckpointContentError, UnsafeCheckpointError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1

    renamed = sum(1 for old, new in mapping if old != new)
    meta = dict(
        source=osp.abspath(args.src),
        ema=bool(args.ema),
        task=args.task,
        converter='vmamba-mm tools/model_converters/vmamba2mm.py',
        num_keys=len(converted),
    )
    out_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(out_dir, exist_ok=True)
    torch.save({'state_dict': converted, 'meta': meta}, args.dst)

    which = 'model_ema' if args.ema else 'model weights'
    print(f'read {len(sd)} keys ({which}) from {args.src}')
    print(f'wrote {len(converted)} keys to {args.dst} ({renamed} renamed, '
          f'{len(converted) - renamed} unchanged)')
    groups = Counter(_group(new) for _, new in mapping)
    for name, count in sorted(groups.items()):
        print(f'  {name:<24s} {count:5d}')
    special = [(old, new) for old, new in mapping
               if old != new and not new.endswith(old)]
    if special:
        print('renamed beyond a prefix:')
    for old, new in special[:20]:
        print(f'  {old} -> {new}')
    if len(special) > 20:
        print(f'  ... and {len(special) - 20} more')
    return 0


if __name__ == '__main__':
    sys.exit(main())
