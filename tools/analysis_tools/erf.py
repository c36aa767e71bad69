# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""Effective receptive fields of model configs, drawn side by side (RepLKNet's method).

For every image, the gradient of the centre pixel of the backbone's last feature map (summed
over channels) with respect to the normalised input, rectified, summed over colour channels and
averaged over the images; drawn as ``log10(erf + 1)`` scaled to a maximum of 1, with RepLKNet's
high-contribution area ratios printed per model (see ``vmamba_mm.analysis.erf``).

Images are resized (shorter side) to ``--shape`` and centre-cropped, then normalised by the
config's data preprocessor, as the model sees them in testing. ``--random N`` uses N images of
uniform random pixels instead.

Example (VMamba-T beside mmpretrain's Swin-T, both at initialisation, 224²)::

    python tools/analysis_tools/erf.py configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py \\
        --compare swin --random 8 --shape 224 --out erf.png
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

import torch

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def load_tool(name):
    """A sibling script of tools/analysis_tools as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f'vmamba_tool_{name}', osp.join(osp.dirname(osp.abspath(__file__)), f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Effective receptive field of model configs (RepLKNet method), as a PNG')
    parser.add_argument('configs', nargs='+', help='config file path(s)')
    parser.add_argument(
        '--checkpoint', nargs='+', default=None, metavar='CKPT',
        help='one checkpoint per config, in order; "none" keeps a model at initialisation '
        '(default: all at initialisation)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', metavar='DIR', help='folder of images (searched recursively)')
    source.add_argument('--random', type=int, metavar='N',
                        help='N images of uniform random pixels instead of --images')
    parser.add_argument('--num-images', type=int, default=50,
                        help='use at most this many images of --images (sorted by path; '
                        'default 50, as RepLKNet)')
    parser.add_argument('--shape', type=int, default=224, metavar='S',
                        help='square input size (default 224)')
    parser.add_argument('--compare', choices=['swin'], default=None,
                        help='add mmpretrain\'s Swin-T (swin-tiny_16xb64_in1k, at '
                        'initialisation) as the last panel')
    parser.add_argument('--mode', choices=['relu', 'abs'], default='relu',
                        help='relu: RepLKNet/VMamba (relu of the centre response and of the '
                        'gradient); abs: plain sum and absolute gradient')
    parser.add_argument('--thresholds', type=float, nargs='+', default=None,
                        help='shares of the ERF for the area ratios (default 0.2 0.3 0.5 0.9 '
                        '0.99)')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0, help='seed of --random images')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s own choice)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='defaults to cuda when available, else cpu')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override settings of the given configs (not of Swin-T)')
    parser.add_argument('--out', required=True, metavar='PNG', help='output picture')
    args = parser.parse_args(argv)
    if args.random is not None and args.random < 1:
        parser.error('--random must be >= 1')
    for name in ('num_images', 'shape', 'batch_size', 'threads'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.checkpoint is not None and len(args.checkpoint) != len(args.configs):
        parser.error(f'--checkpoint takes one path (or "none") per config: {len(args.configs)} '
                     f'configs, {len(args.checkpoint)} checkpoints')
    if args.thresholds is not None and not all(0 < t < 1 for t in args.thresholds):
        parser.error(f'--thresholds must lie strictly between 0 and 1, got {args.thresholds}')
    if args.compare == 'swin' and args.shape < 224:
        parser.error(f'--compare swin needs --shape >= 224: Swin-T\'s last stage (1/32 of the '
                     f'input) must hold a 7x7 window; got {args.shape}')
    if not args.out.lower().endswith('.png'):
        parser.error(f'--out writes a PNG; give a path ending in .png, got {args.out!r}')
    return args


def tool_error(message):
    print(f'error: {message}', file=sys.stderr)
    return 2


def build_models(configs, checkpoints, cfg_options, compare_swin):
    """[(name, model)] in eval mode with their weights; a checkpoint that does not fit, or a
    model without a backbone, raises ValueError naming the file."""
    import vmamba_mm  # noqa: F401  (registers the models and the checkpoint loader)
    from vmamba_mm.checkpoint.fit import load_fitting_checkpoint

    bench = load_tool('benchmark')
    entries = [(osp.splitext(osp.basename(c))[0], c, ckpt, cfg_options)
               for c, ckpt in zip(configs, checkpoints or ['none'] * len(configs))]
    if compare_swin:
        entries.append((bench.PEERS['swin'][0], bench.resolve_swin_config(), 'none', None))
    models = []
    for name, path, checkpoint, options in entries:
        model = bench.build_model(path, options)
        if checkpoint.lower() != 'none':
            load_fitting_checkpoint(model, checkpoint)
            name += f' ({osp.basename(checkpoint)})'
        else:
            name += ' (init)'
        if not hasattr(model, 'backbone'):
            raise ValueError(f'{path}: the model ({type(model).__name__}) has no backbone; the '
                             'ERF is taken on the backbone\'s last feature map.')
        models.append((name, model))
    return models


def image_paths(folder, limit):
    if not osp.isdir(folder):
        raise ValueError(f'--images {folder}: no such folder')
    paths = sorted(osp.join(root, f) for root, _, files in os.walk(folder) for f in files
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise ValueError(f'--images {folder}: no image files ({", ".join(IMAGE_SUFFIXES)}) in it')
    return paths[:limit]


def read_image(path, size):
    """HWC uint8 BGR image, shorter side resized to ``size``, centre crop ``size`` x ``size``."""
    import mmcv

    image = mmcv.imread(path)
    if image is None:
        raise ValueError(f'cannot read image {path}')
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    image = mmcv.imresize(image, (new_w, new_h), interpolation='bicubic')
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[top:top + size, left:left + size]


def random_images(count, size, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8).numpy()
            for _ in range(count)]


def preprocess(model, images, device):
    """The model's data preprocessor on HWC uint8 BGR images: a normalised (B, 3, S, S) batch."""
    tensors = [torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous() for image in images]
    return model.data_preprocessor(dict(inputs=tensors), False)['inputs'].to(device).float()


def last_feature_map(model):
    def features(inputs):
        out = model.backbone(inputs)
        return out[-1] if isinstance(out, (tuple, list)) else out
    return features


def draw(maps, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.9), squeeze=False)
    for ax, (name, erf_map, caption) in zip(axes[0], maps):
        # RepLKNet draws the rescaled map with the RdYlGn colour map, low contribution green.
        shown = ax.imshow(erf_map.numpy(), cmap='RdYlGn', vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(caption, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes[0]), fraction=0.02, pad=0.02)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    from vmamba_mm.analysis.erf import (DEFAULT_THRESHOLDS, effective_receptive_field,
                                        high_contribution_area_ratio, log_normalised)

    missing = [c for c in args.configs if not osp.isfile(c)]
    missing += [c for c in args.checkpoint or [] if c.lower() != 'none' and not osp.isfile(c)]
    if missing:
        return tool_error(f'file not found: {", ".join(missing)}')
    if not osp.isdir(osp.dirname(osp.abspath(args.out))):
        return tool_error(f'--out {args.out}: folder {osp.dirname(osp.abspath(args.out))} does '
                          'not exist')
    from vmamba_mm.engine.output_paths import output_folder_problem
    problem = output_folder_problem(osp.dirname(osp.abspath(args.out)), f'--out {args.out}')
    if problem is not None:
        return tool_error(problem)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        return tool_error('--device cuda requested but CUDA is not available')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    thresholds = tuple(args.thresholds or DEFAULT_THRESHOLDS)
    try:
        if args.images is not None:
            paths = image_paths(args.images, args.num_images)
            images = [read_image(p, args.shape) for p in paths]
            source = f'{len(images)} images of {args.images}'
        else:
            images = random_images(args.random, args.shape, args.seed)
            source = f'{args.random} random images'
        models = build_models(args.configs, args.checkpoint, args.cfg_options,
                              args.compare == 'swin')
    except ValueError as exc:
        return tool_error(exc)

    print(f'ERF ({args.mode} gradients) at {args.shape}x{args.shape} over {source}, '
          f'device {device}', flush=True)
    panels = []
    for name, model in models:
        model.to(device)
        batches = (preprocess(model, images[i:i + args.batch_size], device)
                   for i in range(0, len(images), args.batch_size))
        erf = effective_receptive_field(last_feature_map(model), batches, args.mode).cpu()
        shown = log_normalised(erf)
        ratios = [high_contribution_area_ratio(shown, t) for t in thresholds]
        print(f'{name}: high-contribution area ratio '
              + ', '.join(f'{t:.0%} of ERF in {side}x{side} = {ratio:.4f}'
                          for t, (side, ratio) in zip(thresholds, ratios)), flush=True)
        caption = ', '.join(f'{t:.0%}: {ratio:.3f}' for t, (_, ratio) in zip(thresholds, ratios)
                            if t in (0.2, 0.5, 0.9))
        panels.append((name, shown, caption or f'{thresholds[0]:.0%}: {ratios[0][1]:.3f}'))
        model.cpu()
    draw(panels, args.out, f'effective receptive field, {args.shape}², {source}, '
         f'log10(g+1)/max; area ratio at share')
    print(f'ERF picture written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
