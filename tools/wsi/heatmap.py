#!/usr/bin/env python
"""Paint one slide's per-patch attention back onto its grid (for 2DMambaMIL also the norm of the
2D scan's output), each panel with a colour bar; cells without tissue stay blank.

    python tools/wsi/heatmap.py CONFIG CHECKPOINT SLIDE_ID --out PNG [--cfg-options KEY=VALUE ...]

The slide is read from the test dataset's ``data_root`` (``features/<SLIDE_ID>.h5`` or ``.pt``).
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('slide_id')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args(argv)


def slide_maps(model, features, positions):
    """{name: (height, width) array, NaN off tissue} and the predicted class scores."""
    model.eval()
    with torch.no_grad():
        logits, extras = model.slide_logits(features, positions)
    height, width = (int(extent) + 1 for extent in positions.max(dim=0).values)
    maps = {}
    for name, values in extras.items():
        grid = np.full((height, width), np.nan)
        grid[positions[:, 0].numpy(), positions[:, 1].numpy()] = values.numpy()
        maps[name] = grid
    return maps, logits.softmax(-1)


def draw(maps, title, out):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, len(maps), figsize=(5 * len(maps), 4.5), squeeze=False)
    for axis, (name, grid) in zip(axes[0], maps.items()):
        image = axis.imshow(grid, cmap='inferno', interpolation='nearest')
        axis.set_title(name)
        axis.set_xlabel('column')
        axis.set_ylabel('row')
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.runner import load_checkpoint

    from vmamba_mm.config import ConfigError
    from vmamba_mm.datasets import DataError, check_datasets
    from vmamba_mm.datasets.wsi import FEATURE_SUFFIXES, grid_positions, read_slide
    from vmamba_mm.engine.runner import load_config
    from vmamba_mm.registry import register_all_modules
    try:
        cfg = load_config(args.config, args.cfg_options)
        register_all_modules()
        if not osp.isfile(args.checkpoint):
            raise ConfigError(f'checkpoint not found: {args.checkpoint}')
        check_datasets(cfg, splits=('test_dataloader', ))  # also sets the model's input width
        dataset_cfg = cfg.test_dataloader.dataset
        candidates = [osp.join(dataset_cfg.data_root, 'features', args.slide_id + suffix)
                      for suffix in FEATURE_SUFFIXES]
        found = [path for path in candidates if osp.isfile(path)]
        if not found:
            raise DataError(f'slide {args.slide_id!r} has no features: neither {candidates[0]} '
                            f'nor {candidates[1]} exists.')
        features, coords, patch_size = read_slide(found[0], dataset_cfg.get('patch_size'))
        positions = grid_positions(coords, patch_size, found[0])
    except (ConfigError, DataError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    # The config's scope, whatever a caller in this process set before (another task's tool).
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu', logger='silent')
    maps, scores = slide_maps(model, features, positions)
    from vmamba_mm.datasets.wsi import WSIFeatureDataset
    classes = WSIFeatureDataset(**{k: v for k, v in dataset_cfg.items()
                                   if k not in ('type', 'pipeline')}).metainfo['classes']
    predicted = int(scores.argmax())
    title = (f'{args.slide_id}: {len(features)} patches on {maps["attention"].shape[0]}x'
             f'{maps["attention"].shape[1]}, predicted {classes[predicted]} '
             f'({100 * float(scores[predicted]):.1f} %)')
    draw(maps, title, args.out)
    print(f'{args.out}: {", ".join(maps)} of {args.slide_id}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
