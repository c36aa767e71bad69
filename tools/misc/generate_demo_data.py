#!/usr/bin/env python
"""Draw a small demo dataset procedurally (no downloads), in the layouts OpenMMLab reads.

    python tools/misc/generate_demo_data.py cls data/demo_cls [--train-per-class 200] [--size 32]
    python tools/misc/generate_demo_data.py det data/demo_det [--train-images 400] [--size 128]
    python tools/misc/generate_demo_data.py seg data/demo_seg [--train-images 400] [--size 128]
    python tools/misc/generate_demo_data.py wsi data/demo_wsi [--slides 160] [--size 20]

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

wsi: whole-slide feature bags in CLAM's layout (DATA_ROOT/features/<slide>.h5 with features and
coords, DATA_ROOT/labels.csv, DATA_ROOT/splits/splits_{0..4}.csv), read by WSIFeatureDataset. Each
slide is an irregular tissue mask on a --size grid at a random offset; each patch's features are
one of a few noisy prototypes. Every slide has the same number of patches of one 'marked' type:
in 'clustered' slides they form one connected region, in 'scattered' ones no two touch. The label
depends only on that arrangement, never on counts, so a bag-of-instances model stays at chance.

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


WSI_CLASSES = ('clustered', 'scattered')
WSI_PATCH = 224
WSI_FEATURES = 32
WSI_MARKED = 8
WSI_FOLDS = 5


def _tissue_mask(size, rng):
    """An irregular blob: a union of random ellipses, at least half the grid."""
    rows, cols = np.mgrid[:size, :size]
    while True:
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(3, 6)):
            centre = rng.uniform(0.25, 0.75, 2) * size
            radii = rng.uniform(0.15, 0.35, 2) * size
            mask |= ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1
        if mask.sum() >= size * size // 3:
            return mask


def _neighbours(cell, size):
    row, col = cell
    return [(r, c) for r, c in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1))
            if 0 <= r < size and 0 <= c < size]


def _clustered(mask, count, rng):
    """count tissue cells forming one 4-connected region, grown from a random tissue cell."""
    tissue = list(zip(*np.nonzero(mask)))
    while True:
        region = [tissue[rng.integers(len(tissue))]]
        frontier = set()
        while len(region) < count:
            frontier |= {n for n in _neighbours(region[-1], mask.shape[0]) if mask[n]}
            frontier -= set(region)
            if not frontier:
                break
            options = sorted(frontier)
            region.append(options[rng.integers(len(options))])
        if len(region) == count:
            return region


def _scattered(mask, count, rng):
    """count tissue cells of which no two are 8-neighbours."""
    while True:
        tissue = list(zip(*np.nonzero(mask)))
        chosen = []
        for index in rng.permutation(len(tissue)):
            row, col = tissue[index]
            if all(max(abs(row - r), abs(col - c)) > 1 for r, c in chosen):
                chosen.append((row, col))
                if len(chosen) == count:
                    return chosen


def generate_wsi(root, slides, size, seed, features=WSI_FEATURES):
    import h5py
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'features'), exist_ok=True)
    os.makedirs(osp.join(root, 'splits'), exist_ok=True)
    # Two tissue prototypes and the marked one, as far apart as the noise around them.
    prototypes = rng.normal(size=(3, features))
    labels = []
    for index in range(slides):
        slide_id = f'slide_{index:04d}'
        label = WSI_CLASSES[index % 2]
        mask = _tissue_mask(size, rng)
        place = _clustered if label == 'clustered' else _scattered
        marked = set(place(mask, WSI_MARKED, rng))
        cells = list(zip(*np.nonzero(mask)))
        kinds = np.array([2 if cell in marked else rng.integers(2) for cell in cells])
        bag = prototypes[kinds] + 0.5 * rng.normal(size=(len(cells), features))
        offset = rng.integers(0, 50, 2) * WSI_PATCH + rng.integers(0, WSI_PATCH, 2)
        coords = np.array([(offset[0] + col * WSI_PATCH, offset[1] + row * WSI_PATCH)
                           for row, col in cells], dtype=np.int64)
        with h5py.File(osp.join(root, 'features', f'{slide_id}.h5'), 'w') as handle:
            handle['features'] = bag.astype(np.float32)
            handle['coords'] = coords
            handle['coords'].attrs['patch_size'] = WSI_PATCH
            handle['coords'].attrs['patch_level'] = 0
        labels.append((slide_id, label))
    with open(osp.join(root, 'labels.csv'), 'w') as handle:
        handle.write('slide_id,label\n')
        handle.writelines(f'{slide_id},{label}\n' for slide_id, label in labels)
    ids = [slide_id for slide_id, _ in labels]
    held_out = max(1, slides // 10)
    for fold in range(WSI_FOLDS):
        order = [ids[i] for i in np.random.default_rng(seed + 1 + fold).permutation(slides)]
        columns = (order[2 * held_out:], order[:held_out], order[held_out:2 * held_out])
        with open(osp.join(root, 'splits', f'splits_{fold}.csv'), 'w') as handle:
            handle.write(',train,val,test\n')
            for row in range(len(columns[0])):
                cells = [column[row] if row < len(column) else '' for column in columns]
                handle.write(f'{row},' + ','.join(cells) + '\n')
    print(f'{slides} slides ({", ".join(WSI_CLASSES)}) on a {size}x{size} grid, {features}-d '
          f'features, {WSI_FOLDS} folds -> {root}')


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


def _classification_task(args, size):
    generate_classification(args.root, args.train_per_class, args.val_per_class, size, args.seed)


def _detection_task(args, size):
    generate_detection(args.root, (args.train_images, args.val_images), size, args.max_shapes,
                       args.seed)


def _segmentation_task(args, size):
    generate_segmentation(args.root, (args.train_images, args.val_images), size,
                          args.max_shapes, args.seed)


def _wsi_task(args, size):
    generate_wsi(args.root, args.slides, size, args.seed)


# task -> (its generator, taking the parsed arguments and the --size to use; its default --size).
# A new task is a generator and a line here (and its options in main's parser).
TASKS = {
    'cls': (_classification_task, 32),
    'det': (_detection_task, 128),
    'seg': (_segmentation_task, 128),
    'wsi': (_wsi_task, 20),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('task', choices=list(TASKS))
    parser.add_argument('root', help='DATA_ROOT to write')
    count = at_least(1)
    parser.add_argument('--train-per-class', type=count, default=200, help='cls')
    parser.add_argument('--val-per-class', type=count, default=50, help='cls')
    parser.add_argument('--train-images', type=count, default=400, help='det and seg')
    parser.add_argument('--val-images', type=count, default=100, help='det and seg')
    parser.add_argument('--max-shapes', type=count, default=3, help='per image, det and seg')
    default_sizes = ', '.join(f'{size} for {task}' for task, (_, size) in TASKS.items())
    parser.add_argument('--size', type=at_least(MIN_SIZE),
                        help=f'image side in pixels (grid side for wsi), at least {MIN_SIZE} '
                        f'(default: {default_sizes})')
    parser.add_argument('--slides', type=at_least(10), default=160, help='wsi')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    generate, default_size = TASKS[args.task]
    generate(args, args.size if args.size is not None else default_size)
    return 0


if __name__ == '__main__':
    sys.exit(main())
