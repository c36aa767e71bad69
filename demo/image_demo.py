#!/usr/bin/env python
"""Run a classifier, detector or segmentor of vmamba-mm on images: drawn images and JSON files.

The config's default_scope picks the inferencer: mmpretrain's ImageClassificationInferencer,
mmdet's DetInferencer or mmseg's MMSegInferencer. For every image, under --out-dir:

- ``vis/``: the image with the prediction drawn on it (the inferencer's own drawing);
- ``preds/<stem>.json``: classification: the top-k labels, class names and scores; detection:
  boxes (x1, y1, x2, y2 in input pixels), labels, scores and masks as COCO RLE, as mmdet's
  inferencer writes them, plus the class names; segmentation: the label map's path
  (``preds/<stem>_pred.png``, one class index per pixel), its size and the pixels per class.

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
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error(f'--topk must be at least 1, got {args.topk}')
    return args


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
        paths = image_files(args.inputs)
        config, checkpoint = resolve_model(args.model, args.checkpoint)
        inferencer, scope = build_inferencer(config, checkpoint, args.device)
    except (DemoError, ConfigError, UnknownModelError, CheckpointContentError,
            CheckpointMismatchError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    predict(inferencer, scope, paths, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
