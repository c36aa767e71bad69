#!/usr/bin/env python
"""Run a classifier, detector or segmentor of vmamba-mm on images: drawn images and JSON files.

The config's default_scope picks the inferencer: mmpretrain's ImageClassificationInferencer,
mmdet's DetInferencer or mmseg's MMSegInferencer. For every image, under --out-dir:

- ``vis/``: the image with the prediction drawn on it (the inferencer's own drawing);
- ``preds/<stem>.json``: classification: the top-k labels, class names and scores; detection:
  boxes (x1, y1, x2, y2 in input pixels), labels, scores and masks as COCO RLE, as mmdet's
  inferencer writes them, plus the class names; segmentation: the label map's path
  (``preds/<stem>_pred.png``, one class index per pixel), its size and the pixels per class.

An image that cannot be read (empty, or bytes that do not decode) is found before the model is
built. A single image, or a folder where no image can be read, stops with one ``error:`` line and
exit status 2. In a folder, the others are predicted and each unreadable one is skipped with a
line on stderr, a summary at the end and exit status 1 (so that a script notices); with
``--stop-on-error`` the first unreadable image stops the demo (status 2) before anything is
predicted.

CONFIG_OR_NAME is a config file or a model name of the model index (``model-index.yml``); with a
name, CHECKPOINT defaults to the model's converted file (vmamba-mm://, see
vmamba_mm/apis/model_index.py). The checkpoint must fit the model exactly, as in tools/test.py.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


class DemoError(ValueError):
    """Bad input to the demo, said in one line."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Predict on images with a vmamba-mm config or model name; write the drawn '
                    'images and one JSON per image.')
    parser.add_argument('inputs', metavar='IMG_OR_DIR',
                        help='an image file, or a folder whose images (not subfolders) are read')
    parser.add_argument('model', metavar='CONFIG_OR_NAME',
                        help='a config file, or a model name of model-index.yml')
    parser.add_argument('checkpoint', metavar='CHECKPOINT', nargs='?',
                        help="the weights (required with a config; with a name, the model's "
                             'converted file by default)')
    parser.add_argument('--device', help='e.g. cpu or cuda:0 (default: cuda:0 if available)')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and preds/ are written (default: outputs)')
    parser.add_argument('--show', action='store_true', help='also show each drawn image')
    parser.add_argument('--topk', type=int, default=5,
                        help='classification: how many labels the JSON lists (default 5)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: smallest score drawn (the JSON has every prediction)')
    parser.add_argument('--stop-on-error', action='store_true',
                        help='stop (exit status 2) at the first image of the folder that cannot '
                             'be read, before predicting any; by default such images are skipped '
                             'and reported, and the exit status is 1')
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error(f'--topk must be at least 1, got {args.topk}')
    if not 0 <= args.score_thr <= 1:  # also refuses nan
        parser.error(f'--score-thr is a score between 0 and 1, got {args.score_thr}')
    return args


def device_problem(device):
    """Why --device cannot run the demo here, or None (None: the inferencer's default)."""
    if device is None:
        return None
    import torch
    try:
        parsed = torch.device(device)
    except RuntimeError:  # torch's parse error for a string that names no device
        return f'--device {device!r} is not a device; give cpu, cuda or cuda:N'
    if parsed.type == 'cpu':
        return None
    if parsed.type != 'cuda':
        return f'--device {device}: the demo runs on cpu, cuda or cuda:N'
    count = torch.cuda.device_count()
    if count == 0:
        return f'--device {device}: CUDA is not available on this machine; use --device cpu'
    if parsed.index is not None and parsed.index >= count:
        return (f'--device {device}: this machine has {count} CUDA device(s), cuda:0 to '
                f'cuda:{count - 1}')
    return None


def out_dir_problem(out_dir):
    """Why the drawn images and JSON files cannot be written under --out-dir, or None."""
    from vmamba_mm.engine.output_paths import output_folder_problem
    for sub in ('preds', 'vis'):
        problem = output_folder_problem(osp.join(out_dir, sub), f'--out-dir {out_dir}')
        if problem is not None:
            return problem
    return None


def unreadable_reason(path):
    """Why an image file cannot be predicted on (said after its path), or None. Decoded as the
    inferencers' LoadImageFromFile decodes it."""
    import mmcv
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        return f'cannot be read ({exc.strerror})'
    if not data:
        return 'is empty (0 bytes)'
    if mmcv.imfrombytes(data) is None:
        return 'does not decode as an image'
    return None


def readable_images(inputs, paths, stop_on_error):
    """The paths that can be predicted on, and (path, reason) of those that cannot. Raises
    DemoError where nothing should be predicted: a single unreadable image, a folder of them only,
    or the first one with --stop-on-error."""
    unreadable = []
    for path in paths:
        reason = unreadable_reason(path)
        if reason is None:
            continue
        if len(paths) == 1 or stop_on_error:
            raise DemoError(f'image {path} {reason}; replace or remove it'
                            + (' (without --stop-on-error the others are predicted and it is '
                               'skipped)' if len(paths) > 1 else ''))
        unreadable.append((path, reason))
    if len(unreadable) == len(paths):
        raise DemoError(f'none of the {len(paths)} images in {inputs} can be read, e.g. '
                        f'{unreadable[0][0]} {unreadable[0][1]}')
    skipped = {path for path, _ in unreadable}
    return [path for path in paths if path not in skipped], unreadable


def image_files(inputs):
    """The image paths of a file or a folder, sorted; their stems must differ (they name the
    outputs)."""
    if osp.isdir(inputs):
        paths = sorted(osp.join(inputs, name) for name in os.listdir(inputs)
                       if name.lower().endswith(IMAGE_EXTENSIONS)
                       and osp.isfile(osp.join(inputs, name)))
        if not paths:
            raise DemoError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in the folder {inputs}')
    elif osp.isfile(inputs):
        paths = [inputs]
    else:
        raise DemoError(f'image or folder not found: {inputs}')
    stems = {}
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        if stem in stems:
            raise DemoError(f'{stems[stem]} and {path} would write the same output files '
                            f'({stem}.json); rename one')
        stems[stem] = path
    return paths


def resolve_model(model, checkpoint):
    """(config path, checkpoint path) of a config file or a model name."""
    from vmamba_mm.apis.model_index import find_model
    if osp.isfile(model):
        config = model
        if checkpoint is None:
            raise DemoError(f'a config ({model}) needs a CHECKPOINT; only model names have '
                            f'default weights')
    elif model.endswith('.py'):
        raise DemoError(f'config file not found: {model}')
    else:
        entry = find_model(model)
        config = entry.config
        if checkpoint is None:
            from vmamba_mm.apis.model_index import missing_checkpoint_message
            checkpoint = entry.checkpoint
            if not osp.isfile(checkpoint):
                raise DemoError(missing_checkpoint_message(entry.weights, checkpoint))
    from vmamba_mm.engine.resume import checkpoint_file_problem
    problem = checkpoint_file_problem(checkpoint)
    if problem is not None:
        raise DemoError(f'checkpoint {checkpoint} {problem}')
    return config, checkpoint


def fitting(inferencer_class, checkpoint_path):
    """The mmengine inferencer class, made to refuse a checkpoint that does not fit its model
    (mmengine loads with strict=False and would predict with random weights)."""
    from vmamba_mm.checkpoint.fit import check_checkpoint_fits

    class FittingInferencer(inferencer_class):

        def _load_weights_to_model(self, model, checkpoint, cfg):
            if checkpoint is not None:
                check_checkpoint_fits(checkpoint, model, checkpoint_path)
            super()._load_weights_to_model(model, checkpoint, cfg)
            meta = getattr(model, 'dataset_meta', None)
            if isinstance(meta, dict) and meta.get('classes') and meta.get('palette') is None:
                # mmseg takes the palette from the checkpoint only, and its drawing asserts on
                # class names without one: the config's, else fixed colours.
                meta['palette'] = config_palette(cfg, len(meta['classes']))

    return FittingInferencer


def config_palette(cfg, num_classes):
    """The test set's palette of the config when it has one per class, else fixed colours."""
    import numpy as np
    metainfo = cfg.test_dataloader.dataset.get('metainfo') or {}
    palette = metainfo.get('palette')
    if palette is not None and len(palette) == num_classes:
        return [list(colour) for colour in palette]
    return np.random.default_rng(0).integers(0, 256, (num_classes, 3)).tolist()


def classifier(config, checkpoint_path, device):
    """ImageClassificationInferencer on the config's model with the checkpoint's weights, loaded
    strictly after the fit check; class names from the checkpoint's dataset_meta if it has them."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    from mmpretrain import ImageClassificationInferencer, get_model

    from vmamba_mm.checkpoint.mmengine_loader import trusted_load
    from vmamba_mm.checkpoint.fit import check_checkpoint_fits
    model = get_model(config, pretrained=False)
    checkpoint = trusted_load(checkpoint_path, map_location='cpu')
    check_checkpoint_fits(checkpoint, model, checkpoint_path)
    _load_checkpoint_to_model(model, checkpoint, strict=True)
    meta = checkpoint.get('meta') or {}
    if meta.get('dataset_meta'):
        model._dataset_meta = meta['dataset_meta']
    if device is not None:
        model.to(device)
    return ImageClassificationInferencer(model, pretrained=False, device=device)


def build_inferencer(config, checkpoint, device):
    """The task's inferencer (by the config's default_scope) and the scope."""
    from vmamba_mm.config import read_config
    cfg = read_config(config)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise DemoError(f'{config}: default_scope is {scope!r}; the demo runs configs of '
                        f'{", ".join(SCOPES)}')
    if scope == 'mmpretrain':
        # mmpretrain's inferencer builds its pipeline in the current scope (mmdet's and mmseg's
        # set their own)
        from mmengine.registry import init_default_scope
        init_default_scope(scope)
        return classifier(cfg, checkpoint, device), scope
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return fitting(DetInferencer, checkpoint)(cfg, checkpoint, device=device,
                                                  show_progress=False), scope
    from mmseg.apis import MMSegInferencer
    inferencer = fitting(MMSegInferencer, checkpoint)(cfg, checkpoint, device=device)
    inferencer.show_progress = False  # one image a call: a progress bar per image is noise
    return inferencer, scope


def classification_record(inferencer, path, out_dir, show, topk):
    sample = inferencer(path, return_datasamples=True, show=show,
                        show_dir=osp.join(out_dir, 'vis'))[0]
    scores = sample.pred_score.detach().cpu()
    values, labels = scores.topk(min(topk, scores.numel()))
    classes = inferencer.classes
    return {
        'topk': [{'label': int(label), 'score': float(value),
                  **({'class': classes[label]} if classes is not None else {})}
                 for value, label in zip(values.tolist(), labels.tolist())],
        'visualization': osp.join(out_dir, 'vis',
                                  osp.splitext(osp.basename(path))[0] + '.png'),
    }


def detection_record(inferencer, path, out_dir, show, score_thr):
    result = inferencer(path, return_datasamples=True, out_dir=out_dir, no_save_pred=True,
                        show=show, pred_score_thr=score_thr)
    record = inferencer.pred2dict(result['predictions'][0])
    classes = inferencer.model.dataset_meta.get('classes')
    if classes is not None:
        record['classes'] = [classes[label] for label in record['labels']]
    record['visualization'] = osp.join(out_dir, 'vis', osp.basename(path))
    return record


def segmentation_record(inferencer, path, out_dir, show):
    import numpy as np
    from PIL import Image
    sample = inferencer(path, return_datasamples=True, out_dir=out_dir, show=show)
    label_map = sample.pred_sem_seg.data[0].cpu().numpy()
    stem = osp.splitext(osp.basename(path))[0]
    seg_path = osp.join(out_dir, 'preds', f'{stem}_pred.png')
    Image.fromarray(label_map.astype(np.uint8)).save(seg_path)
    classes = inferencer.model.dataset_meta.get('classes')
    labels, counts = np.unique(label_map, return_counts=True)
    return {
        'seg_map': seg_path,
        'height': int(label_map.shape[0]), 'width': int(label_map.shape[1]),
        'pixels_per_class': {(classes[label] if classes is not None else str(label)): int(count)
                             for label, count in zip(labels.tolist(), counts.tolist())},
        'visualization': osp.join(out_dir, 'vis', osp.basename(path)),
    }


def predict(inferencer, scope, paths, args):
    """Write each image's drawing and JSON; returns the JSON paths."""
    os.makedirs(osp.join(args.out_dir, 'preds'), exist_ok=True)
    written = []
    for path in paths:
        if scope == 'mmpretrain':
            record = classification_record(inferencer, path, args.out_dir, args.show, args.topk)
        elif scope == 'mmdet':
            record = detection_record(inferencer, path, args.out_dir, args.show, args.score_thr)
        else:
            record = segmentation_record(inferencer, path, args.out_dir, args.show)
        record = {'image': path, **record}
        json_path = osp.join(args.out_dir, 'preds',
                             osp.splitext(osp.basename(path))[0] + '.json')
        with open(json_path, 'w', encoding='utf-8') as f:
            json.dump(record, f)
        print(f'{path}: {summary(scope, record)} -> {record["visualization"]}, {json_path}')
        written.append(json_path)
    return written


def summary(scope, record):
    if scope == 'mmpretrain':
        best = record['topk'][0]
        return f'{best.get("class", best["label"])} ({best["score"]:.3f})'
    if scope == 'mmdet':
        return f'{len(record["labels"])} instances'
    return f'{len(record["pixels_per_class"])} classes present'


def main(argv=None):
    args = parse_args(argv)
    import vmamba_mm  # noqa: F401  (registers VSSM, the checkpoint loaders and the model names)
    from vmamba_mm.apis.model_index import UnknownModelError
    from vmamba_mm.checkpoint import CheckpointContentError
    from vmamba_mm.checkpoint.fit import CheckpointMismatchError
    from vmamba_mm.config import ConfigError
    try:
        for problem in (device_problem(args.device), out_dir_problem(args.out_dir)):
            if problem is not None:
                raise DemoError(problem)
        paths = image_files(args.inputs)
        readable, unreadable = readable_images(args.inputs, paths, args.stop_on_error)
        config, checkpoint = resolve_model(args.model, args.checkpoint)
        inferencer, scope = build_inferencer(config, checkpoint, args.device)
    except (DemoError, ConfigError, UnknownModelError, CheckpointContentError,
            CheckpointMismatchError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    for path, reason in unreadable:
        print(f'skipped: image {path} {reason}', file=sys.stderr)
    predict(inferencer, scope, readable, args)
    if unreadable:
        print(f'skipped {len(unreadable)} of the {len(paths)} images, which cannot be read: '
              f'{[path for path, _ in unreadable][:5]}; the other {len(readable)} were '
              f'predicted. Replace or remove them (--stop-on-error stops at the first).',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
