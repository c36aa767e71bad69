#!/usr/bin/env python
"""Convert an official VMamba checkpoint into a vmamba-mm checkpoint.

The output is ``{'state_dict': ..., 'meta': {...}}`` (torch.save), loadable by mmengine
(``load_from``, ``init_cfg=dict(type='Pretrained', checkpoint=...)``) into the project's
mmpretrain classifiers (``backbone.*``, ``backbone.outnorm{last}.*``, ``head.fc.*``) or, for
official detection/segmentation files, into the mmdet/mmseg models (``backbone.*`` and
neck/head keys as they are).

OUT is written under a temporary name beside it and renamed into place, so an interrupted run
leaves either no OUT or the complete one; OUT may not be IN (the original would be replaced).
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


def _file_blocking_folder(folder):
    """The regular file among folder and its ancestors that stops it being created, or None."""
    path = osp.abspath(folder)
    while not osp.exists(path):
        path = osp.dirname(path)
    return None if osp.isdir(path) else path


def output_problem(src, dst):
    """Why OUT cannot be written, said before anything is read; None when it can."""
    if osp.exists(dst) and osp.samefile(src, dst):
        return (f'OUT {dst} is the input file {src}; converting in place would replace the '
                f'original: give another output path.')
    if osp.isdir(dst):
        return f'OUT {dst} is a folder; give a file path, e.g. {osp.join(dst, "converted.pth")}'
    blocking = _file_blocking_folder(osp.dirname(osp.abspath(dst)))
    if blocking is not None:
        return (f'cannot create the folder of OUT {dst}: {blocking} is a file, not a folder; '
                f'choose another output path.')
    from vmamba_mm.engine.output_paths import output_folder_problem
    return output_folder_problem(osp.dirname(osp.abspath(dst)), f'OUT {dst}')


DENSE_TASKS = ('det', 'seg', 'dense')
CLASSIFICATION_TASKS = ('classification', 'cls')


def _backbone_keys(keys):
    return [k for k in keys if k.removeprefix('module.').startswith('backbone.')]


def task_problem(task, keys):
    """Why --task contradicts the file's keys (the conversion would write keys that no model
    loads), or None."""
    keys = list(keys)
    backbone_keys = _backbone_keys(keys)
    if task in DENSE_TASKS and not backbone_keys:
        return (f'--task {task}: IN has no keys under "backbone.", so it is a classification '
                f'checkpoint ({len(keys)} keys, e.g. {keys[:2]}); --task {task} renames only '
                f'keys under "backbone." and would copy all {len(keys)} unchanged into a file '
                f'that no detector or segmentor loads. Convert it without --task: the '
                f'backbone.* keys of the classification output are what the Mask R-CNN and '
                f'UperNet configs load as their backbone.')
    if task in CLASSIFICATION_TASKS and backbone_keys:
        return (f'--task {task}: {len(backbone_keys)} of the {len(keys)} keys of IN are under '
                f'"backbone." (e.g. {backbone_keys[0]!r}), so it is a detection or segmentation '
                f'checkpoint; the classification layout would prefix them again '
                f'(backbone.backbone.*). Convert it without --task, or with --task det.')
    return None


def describe_task(task, keys):
    """What the conversion did to the key layout, for the summary."""
    how = 'auto, from the keys' if task == 'auto' else f'--task {task}'
    dense = task in DENSE_TASKS or (task == 'auto' and _backbone_keys(keys))
    if dense:
        return (f'layout: detection/segmentation ({how}): legacy names under backbone. '
                f'renamed, the neck and head keys kept as they are')
    return (f'layout: classification ({how}): every key put under backbone., classifier.norm '
            f'-> backbone.outnorm<last stage>, classifier.head -> head.fc')


def save_atomically(obj, path):
    """torch.save to a temporary file beside path, then rename: a kill never leaves half a file."""
    import torch

    from vmamba_mm.engine.atomic_files import move_into_place, temporary_path
    temp_path = temporary_path(path)
    try:
        torch.save(obj, temp_path)
        move_into_place(temp_path, path)
    finally:
        if osp.exists(temp_path):
            os.remove(temp_path)


def fail(message):
    print(f'error: {message}', file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.src):
        return fail(f'input checkpoint not found: {args.src}')
    problem = output_problem(args.src, args.dst)
    if problem is not None:
        return fail(problem)
    # imported here so that --help and argument errors answer without loading torch
    from vmamba_mm.checkpoint import (CheckpointContentError, UnsafeCheckpointError,
                                      convert_official_state_dict, load_official_state_dict)
    try:
        sd = load_official_state_dict(args.src, use_ema=args.ema)
        problem = task_problem(args.task, sd)
        if problem is not None:
            return fail(problem)
        converted, mapping = convert_official_state_dict(sd, task=args.task, return_mapping=True)
    except (CheckpointContentError, UnsafeCheckpointError) as exc:
        return fail(exc)

    renamed = sum(1 for old, new in mapping if old != new)
    meta = dict(
        source=osp.abspath(args.src),
        ema=bool(args.ema),
        task=args.task,
        converter='vmamba-mm tools/model_converters/vmamba2mm.py',
        num_keys=len(converted),
    )
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    save_atomically({'state_dict': converted, 'meta': meta}, args.dst)

    which = 'model_ema' if args.ema else 'model weights'
    print(f'read {len(sd)} keys ({which}) from {args.src}')
    print(f'wrote {len(converted)} keys to {args.dst} ({renamed} renamed, '
          f'{len(converted) - renamed} unchanged)')
    print(describe_task(args.task, sd))
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
