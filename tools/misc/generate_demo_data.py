#!/usr/bin/env python
"""Draw a small demo dataset procedurally (no downloads), in the layouts OpenMMLab reads.

    python tools/misc/generate_demo_data.py cls data/demo_cls [--train-per-class 200] [--size 32]
    python tools/misc/generate_demo_data.py det data/demo_det [--train-images 400] [--size 128]
    python tools/misc/generate_demo_data.py seg data/demo_seg [--train-images 400] [--size 128]

cls: DATA_ROOT/{train,val}/<class>/*.png, one class per shape (circle, square, triangle,
stripes), each drawn at a random place, size and colour on a noisy background; read by
mmpretrain's CustomDataset.

det: COCO instances, DATA_ROOT/annotations/instances_{train,val}.json and DATA_ROOT/{train,val}/
*.png: one to --max-shapes circles, squares and triangles per image, apart from each other, each
annotated with its box, area and mask (RLE of exactly the drawn pixels); category ids from 1.
Read by mmdet's CocoDataset.

seg: ADE20K layout, DATA_ROOT/images/{training,validation}/*.jpg and single-channel label maps
DATA_ROOT/annotations/{training,validation}/*.png drawn from the same scenes. As in ADE20K, label 0
is 'unlabelled' and dropped by reduce_zero_label=True; the noisy field is a class of its own
(label 1, 'background'), so that a model has to find where the shapes are, not only what they are.
Labels 2.. are the shapes.

The same --seed gives the same files.
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('circle', 'square', 'triangle', 'stripes')
# Shapes that are one solid region, so one instance mask / one label region each.
SOLID_SHAPES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + SOLID_SHAPES  # label maps hold 1 + the index in this tuple
# Scenes keep this many pixels between shapes, so that no instance hides part of another.
GAP = 2
# The smallest image side with room for the shapes: scenes draw shapes of at least 6 pixels
# and up to 3/8 of the side, which needs 16 pixels.
MIN_SIZE = 16


def _colour(rng, avoid=None):
    while True:
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if avoid is None or sum(abs(a - b) for a, b in zip(c, avoid)) > 200:
            return c


def noisy_field(size, rng):
    """A plain random colour with pixel noise, so that no task is solved by a colour threshold."""
    background = _colour(rng)
    noise = rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(np.array(background) + noise, 0, 255).astype(np.uint8))
    return image, background


def paint(draw, kind, box, fill):
    """Draw shape ``kind`` filling the square ``box`` = (x0, y0, x1, y1), corners included."""
    x0, y0, x1, y1 = box
    extent = x1 - x0
    if kind == 'circle':
        draw.ellipse(box, fill=fill)
    elif kind == 'square':
        draw.rectangle(box, fill=fill)
    elif kind == 'triangle':
        draw.polygon([(x0 + extent // 2, y0), (x0, y1), (x1, y1)], fill=fill)
    elif kind == 'stripes':
        width = max(2, extent // 8)
        for offset in range(0, extent, 2 * width):
            draw.rectangle((x0 + offset, y0, x0 + offset + width - 1, y1), fill=fill)
    else:
        raise ValueError(f'unknown shape {kind!r}')


def draw_shape(kind, size, rng):
    """One shape on its own field: a classification sample."""
    image, background = noisy_field(size, rng)
    fill = _colour(rng, avoid=background)
    extent = int(rng.integers(size // 3, size * 3 // 4))
    x0, y0 = (int(v) for v in rng.integers(0, size - extent, 2))
    paint(ImageDraw.Draw(image), kind, (x0, y0, x0 + extent, y0 + extent), fill)
    return image


def _apart(box, others):
    return all(box[2] + GAP < o[0] or o[2] + GAP < box[0] or
               box[3] + GAP < o[1] or o[3] + GAP < box[1] for o in others)


def draw_scene(size, max_shapes, rng):
    """A field with one to ``max_shapes`` solid shapes that do not touch.

    Returns the image and, per shape, its kind and a boolean mask of the pixels it covers.
    """
    image, background = noisy_field(size, rng)
    draw = ImageDraw.Draw(image)
    wanted = int(rng.integers(1, max_shapes + 1))
    boxes, shapes = [], []
    # A crowded image may have no room left for the last shapes: it then keeps fewer.
    for _ in range(20 * wanted):
        if len(boxes) == wanted:
            break
        extent = int(rng.integers(max(6, size // 8), size * 3 // 8 + 1))
        x0, y0 = (int(v) for v in rng.integers(0, size - extent, 2))
        box = (x0, y0, x0 + extent, y0 + extent)
        if not _apart(box, boxes):
            continue
        kind = SOLID_SHAPES[int(rng.integers(len(SOLID_SHAPES)))]
        paint(draw, kind, box, _colour(rng, avoid=background))
        mask = Image.new('1', (size, size))
        paint(ImageDraw.Draw(mask), kind, box, 1)
        boxes.append(box)
        shapes.append((kind, np.array(mask)))
    return image, shapes


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


def coco_annotation(mask, annotation_id, image_id, category_id):
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')  # bytes are not JSON
    return dict(id=annotation_id, image_id=image_id, category_id=category_id,
                bbox=[float(v) for v in mask_utils.toBbox(rle)],
                area=float(mask_utils.area(rle)), segmentation=rle, iscrowd=0)


def generate_detection(root, counts, size, max_shapes, seed):
    rng = np.random.default_rng(seed)
    categories = [dict(id=i + 1, name=kind) for i, kind in enumerate(SOLID_SHAPES)]
    total = 0
    for split, count in zip(('train', 'val'), counts):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, shapes = draw_scene(size, max_shapes, rng)
            file_name = f'{index:05d}.png'
            image.save(osp.join(root, split, file_name))
            image_id = index + 1
            images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
            for kind, mask in shapes:
                annotations.append(coco_annotation(mask, len(annotations) + 1, image_id,
                                                   SOLID_SHAPES.index(kind) + 1))
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
        total += len(annotations)
    print(f'wrote {sum(counts)} images with {total} instances of {len(SOLID_SHAPES)} classes '
          f'to {root}')


def generate_segmentation(root, counts, size, max_shapes, seed):
    rng = np.random.default_rng(seed)
    for split, count in zip(('training', 'validation'), counts):
        for kind in ('images', 'annotations'):
            os.makedirs(osp.join(root, kind, split), exist_ok=True)
        for index in range(count):
            image, shapes = draw_scene(size, max_shapes, rng)
            labels = np.full((size, size), 1 + SEG_CLASSES.index('background'), np.uint8)
            for kind, mask in shapes:
                labels[mask] = 1 + SEG_CLASSES.index(kind)
            name = f'{index:05d}'
            image.save(osp.join(root, 'images', split, name + '.jpg'), quality=95)
            Image.fromarray(labels).save(osp.join(root, 'annotations', split, name + '.png'))
    print(f'wrote {sum(counts)} images with label maps of {len(SEG_CLASSES)} classes to {root}')


def at_least(minimum):
    """An argparse type: an integer of at least ``minimum``, refused with the valid range."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'{value} is too small: the valid range is '
                                             f'{minimum} or more')
        return value

    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('task', choices=['cls', 'det', 'seg'])
    parser.add_argument('root', help='DATA_ROOT to write')
    count = at_least(1)
    parser.add_argument('--train-per-class', type=count, default=200, help='cls')
    parser.add_argument('--val-per-class', type=count, default=50, help='cls')
    parser.add_argument('--train-images', type=count, default=400, help='det and seg')
    parser.add_argument('--val-images', type=count, default=100, help='det and seg')
    parser.add_argument('--max-shapes', type=count, default=3, help='per image, det and seg')
    parser.add_argument('--size', type=at_least(MIN_SIZE),
                        help=f'image side in pixels, at least {MIN_SIZE} (default: 32 for cls, '
                        '128 for det and seg)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.task == 'cls':
        generate_classification(args.root, args.train_per_class, args.val_per_class,
                                args.size if args.size is not None else 32, args.seed)
    else:
        generate = generate_detection if args.task == 'det' else generate_segmentation
        size = args.size if args.size is not None else 128
        generate(args.root, (args.train_images, args.val_images), size,
                 args.max_shapes, args.seed)
    return 0


if __name__ == '__main__':
    sys.exit(main())
