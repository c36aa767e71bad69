#!/usr/bin/env python
"""Draw a small demo dataset procedurally (no downloads), in the layouts OpenMMLab reads.

    python tools/misc/generate_demo_data.py cls data/demo_cls [--train-per-class 200] [--size 32]

cls: DATA_ROOT/{train,val}/<class>/*.png, one class per shape (circle, square, triangle,
stripes), each drawn at a random place, size and colour on a noisy background; read by
mmpretrain's CustomDataset. The detection and segmentation layouts are added by a later issue.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('circle', 'square', 'triangle', 'stripes')


def _colour(rng, avoid=None):
    while True:
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if avoid is None or sum(abs(a - b) for a, b in zip(c, avoid)) > 200:
            return c


def draw_shape(kind, size, rng):
    background = _colour(rng)
    noise = rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(np.array(background) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    fill = _colour(rng, avoid=background)
    extent = int(rng.integers(size // 3, size * 3 // 4))
    x0, y0 = (int(v) for v in rng.integers(0, size - extent, 2))
    box = (x0, y0, x0 + extent, y0 + extent)
    if kind == 'circle':
        draw.ellipse(box, fill=fill)
    elif kind == 'square':
        draw.rectangle(box, fill=fill)
    elif kind == 'triangle':
        draw.polygon([(x0 + extent // 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)],
                     fill=fill)
    else:
        width = max(2, extent // 8)
        for offset in range(0, extent, 2 * width):
            draw.rectangle((x0 + offset, y0, x0 + offset + width - 1, y0 + extent), fill=fill)
    return image


def generate_classification(root, train_per_class, val_per_class, size, seed):
    rng = np.random.default_rng(seed)
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for kind in CLASSES:
            folder = osp.join(root, split, kind)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                draw_shape(kind, size, rng).save(osp.join(folder, f'{kind}_{i:04d}.png'))
    print(f'wrote {len(CLASSES) * (train_per_class + val_per_class)} images of {len(CLASSES)} '
          f'classes to {root}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('task', choices=['cls'])
    parser.add_argument('root', help='DATA_ROOT to write')
    parser.add_argument('--train-per-class', type=int, default=200)
    parser.add_argument('--val-per-class', type=int, default=50)
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    generate_classification(args.root, args.train_per_class, args.val_per_class, args.size,
                            args.seed)
    return 0


if __name__ == '__main__':
    sys.exit(main())
