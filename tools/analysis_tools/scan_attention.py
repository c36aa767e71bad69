# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""The selective scan's implicit attention in one VSS block, overlaid on the image.

For the chosen block, route and query pixel t, the weight of every source pixel s the route has
visited up to t is ``w[d, s] = sum_n C_t[n] prod_{r=s+1..t} exp(delta_r[d] A[d, n]) delta_s[d]
B_s[n]`` (``vmamba_mm.analysis.scan_attention``): the scan's output at t is exactly
``sum_s w[d, s] u_s[d] + D[d] u_t[d]``. The picture shows, per route and for the four routes
merged (their sum: SS2D adds the routes' outputs), the absolute value of the weight averaged over
the block's channels (signed mean, then absolute value), each panel scaled to its own maximum.

The block's input is captured during a forward pass of the backbone; the scan's inputs are
recomputed from it with the block's weights, and the tool checks that the weights reproduce the
block's own scan output at the query pixel (printed as ``operator check``).

Example (the classification demo's checkpoint, first block, all routes)::

    python tools/analysis_tools/scan_attention.py configs/demo/classification.py \\
        --checkpoint work_dirs/demo_cls/epoch_20.pth \\
        --image data/demo_cls/val/circle/0000.png --shape 64 --block 0.0 --route all \\
        --out attn.png
"""
import argparse
import importlib.util
import os.path as osp
import sys

import numpy as np
import torch

ROUTE_NAMES = {
    'cross': ('row-major', 'column-major', 'row-major reversed', 'column-major reversed'),
    'bidirectional': ('row-major', 'row-major', 'row-major reversed', 'row-major reversed'),
    'unidirectional': ('row-major', ) * 4,
}
# The recomputed operator must give the block's scan output to float32 accuracy.
OPERATOR_TOLERANCE = 1e-3


def load_tool(name):
    """A sibling script of tools/analysis_tools as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f'vmamba_tool_{name}', osp.join(osp.dirname(osp.abspath(__file__)), f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block_spec(text):
    stage, sep, block = text.partition('.')
    if not sep or not stage.isdigit() or not block.isdigit():
        raise argparse.ArgumentTypeError(f'expected STAGE.BLOCK such as 0.1, got {text!r}')
    return int(stage), int(block)


def route_spec(text):
    if text == 'all':
        return None
    if text not in ('0', '1', '2', '3'):
        raise argparse.ArgumentTypeError(f'expected a route 0-3 or all, got {text!r}')
    return int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='The implicit attention of a VSS block\'s selective scan, as a PNG')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--checkpoint', default=None, help='weights (default: initialisation)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--image', metavar='IMG', help='image file')
    source.add_argument('--random', action='store_true', help='an image of uniform random pixels')
    parser.add_argument('--shape', type=int, default=224, metavar='S',
                        help='square input size: shorter side resized, centre crop (default 224)')
    parser.add_argument('--block', type=block_spec, default=(0, 0), metavar='STAGE.BLOCK',
                        help='the block, counted from 0 in both (default 0.0)')
    parser.add_argument('--route', type=route_spec, default=None, metavar='R|all',
                        help='route 0-3 (and the merged panel) or all (default)')
    parser.add_argument('--query', type=int, nargs=2, default=None, metavar=('Y', 'X'),
                        help='query pixel in input-image coordinates (default: the centre)')
    parser.add_argument('--seed', type=int, default=0, help='seed of --random')
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override settings of the config')
    parser.add_argument('--out', required=True, metavar='PNG', help='output picture')
    args = parser.parse_args(argv)
    if args.shape < 1:
        parser.error('--shape must be >= 1')
    if args.query is not None and not all(0 <= q < args.shape for q in args.query):
        parser.error(f'--query {args.query[0]} {args.query[1]} lies outside the '
                     f'{args.shape}x{args.shape} input')
    if not args.out.lower().endswith('.png'):
        parser.error(f'--out writes a PNG; give a path ending in .png, got {args.out!r}')
    return args


def tool_error(message):
    print(f'error: {message}', file=sys.stderr)
    return 2


def find_block(model, stage, block, config):
    backbone = getattr(model, 'backbone', model)
    layers = getattr(backbone, 'layers', None)
    if layers is None or not hasattr(layers[0], 'blocks'):
        raise ValueError(f'{config}: the backbone ({type(backbone).__name__}) is not a VSSM; '
                         'scan attention needs VSS blocks.')
    depths = [len(layer.blocks) for layer in layers]
    if stage >= len(depths) or block >= depths[stage]:
        raise ValueError(f'--block {stage}.{block}: the backbone has stages 0-{len(depths) - 1} '
                         f'with {depths} blocks')
    return backbone, layers[stage].blocks[block]


def capture_block(backbone, block, inputs):
    """Run the backbone; return what the block's mixer received and its scan's output."""
    captured = {}
    hooks = [
        block.op.register_forward_pre_hook(
            lambda module, args: captured.__setitem__('input', args[0].detach())),
        block.op.observe_scan(lambda x, y: captured.__setitem__('scan', y.detach())),
    ]
    try:
        with torch.no_grad():
            backbone(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return captured['input'], captured['scan']


def overlay(image_rgb, weights):
    """The image with the |weights| map (scaled to its maximum) blended over it."""
    import matplotlib

    size = image_rgb.shape[0]
    grid = np.abs(weights)
    peak = grid.max()
    grid = grid / peak if peak > 0 else grid
    # Each image pixel shows the grid cell it falls in (nearest: the cells stay visible).
    rows = np.arange(size) * grid.shape[0] // size
    cols = np.arange(size) * grid.shape[1] // size
    cells = grid[rows][:, cols]
    heat = matplotlib.colormaps['inferno'](cells)[..., :3]
    # A grey image underneath, so that its colours are not read as weights.
    grey = (image_rgb.astype(np.float64) / 255.0).mean(-1, keepdims=True)
    return 0.3 * grey + 0.7 * heat


def draw(image_rgb, panels, query, cell_box, path, title):
    """cell_box: (top, left, height, width) of the query's grid cell in image pixels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 3.0))
    axes[0].imshow(image_rgb)
    axes[0].set_title('input', fontsize=8)
    for ax, (name, weights) in zip(axes[1:], panels):
        ax.imshow(overlay(image_rgb, weights))
        ax.set_title(name, fontsize=8)
    top, left, height, width = cell_box
    for ax in axes:
        ax.plot(query[1], query[0], marker='+', color='cyan', markersize=8, mew=1.5)
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False,
                               edgecolor='cyan', linewidth=1))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    from vmamba_mm.analysis.scan_attention import block_scan_attention, reduce_channels

    for path in (args.config, args.checkpoint, args.image):
        if path is not None and not osp.isfile(path):
            return tool_error(f'file not found: {path}')
    if not osp.isdir(osp.dirname(osp.abspath(args.out))):
        return tool_error(f'--out {args.out}: folder {osp.dirname(osp.abspath(args.out))} does '
                          'not exist')
    erf_tool = load_tool('erf')
    try:
        (name, model), = erf_tool.build_models(
            [args.config], [args.checkpoint or 'none'], args.cfg_options, False)
        stage, index = args.block
        backbone, block = find_block(model, stage, index, args.config)
        image = (erf_tool.read_image(args.image, args.shape) if args.image else
                 erf_tool.random_images(1, args.shape, args.seed)[0])
    except ValueError as exc:
        return tool_error(exc)
    inputs = erf_tool.preprocess(model, [image], 'cpu')
    block_input, scan_output = capture_block(backbone, block, inputs)
    mixer = block.op
    if not mixer.supports_scan_attention():
        return tool_error(f'{args.config}: block {stage}.{index}: its {mixer.mixer_name!r} mixer '
                          f'({mixer.scan_operation}) has no route-wise 1D scan to unroll; this '
                          'tool covers the 1D scan')
    query = tuple(args.query) if args.query is not None else (args.shape // 2, args.shape // 2)
    grid_h, grid_w = (scan_output.shape[-2:] if mixer.channel_first else
                      scan_output.shape[1:3])
    cell = (query[0] * grid_h // args.shape, query[1] * grid_w // args.shape)
    attention = block_scan_attention(mixer, block_input, cell)
    weights = attention['weights']  # (routes, D, h, w)

    # The operator check: the weights times the scan input, plus the D term, give the block's
    # own scan output at the query pixel.
    u_map = attention['u'][0, 0].gather(
        -1, torch.argsort(attention['pixels'][0])[None].expand_as(attention['u'][0, 0]))
    u_map = u_map.view(-1, grid_h, grid_w).double()
    from_operator = (weights * u_map).sum(dim=(0, 2, 3)) + \
        attention['D'].double().sum(0) * u_map[:, cell[0], cell[1]]
    actual = (scan_output[0, :, cell[0], cell[1]] if mixer.channel_first else
              scan_output[0, cell[0], cell[1], :]).double()
    deviation = float((from_operator - actual).abs().max() / actual.abs().max().clamp_min(1e-12))

    routes = range(4) if args.route is None else [args.route]
    scan_order = attention['scan_order']
    names = ROUTE_NAMES[scan_order]
    per_channel_mean = reduce_channels(weights)  # (routes, h, w), signed
    panels = [(f'route {r}: {names[r]}', per_channel_mean[r].numpy()) for r in routes]
    panels.append(('merged (sum of the 4 routes)', per_channel_mean.sum(0).numpy()))
    state = attention['A'].shape[-1]
    print(f'{name}: block {stage}.{index} ({scan_order} scan, {weights.shape[1]} channels, '
          f'state {state}, grid {grid_h}x{grid_w}); query pixel {query[0]},{query[1]} '
          f'of {args.shape}x{args.shape} -> cell {cell[0]},{cell[1]}')
    for r in routes:
        visited = int((weights[r].abs().sum(0) > 0).sum())
        mean_map = per_channel_mean[r]
        print(f'  route {r} ({names[r]}): {visited} source pixels; channel-mean weight at the '
              f'query {float(mean_map[cell]):.4g}, sum {float(mean_map.sum()):.4g}, '
              f'|max| {float(mean_map.abs().max()):.4g}')
    print(f'  operator check: weights . u + D u reproduce the block\'s scan output at the query '
          f'to {deviation:.2e} of its scale')
    if not deviation < OPERATOR_TOLERANCE:
        return tool_error(f'the recomputed weights miss the block\'s scan output by '
                          f'{deviation:.2e} of its scale (more than {OPERATOR_TOLERANCE})')
    image_rgb = image[..., ::-1]
    cell_box = (cell[0] * args.shape / grid_h, cell[1] * args.shape / grid_w,
                args.shape / grid_h, args.shape / grid_w)
    draw(image_rgb, panels, query, cell_box, args.out,
         f'{name}, block {stage}.{index}, |channel-mean scan weight| on query ({query[0]}, '
         f'{query[1]}), each panel scaled to its maximum')
    print(f'scan attention picture written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
