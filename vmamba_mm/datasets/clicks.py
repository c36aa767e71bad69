"""SAM-style click prompts sampled from the ground truth: the data side of interactive segmentation.

``SelectObject`` is the other setting of interactive segmentation (RITM's, SAM's): one object is
the target and the clicks say which; see its docstring.

``SampleClicks`` (registered in mmseg's TRANSFORMS by ``vmamba_mm.registry``) follows the SAM
recipe's "first click in the largest error region's interior": without a previous prediction every
unclicked region is an error region, so click ``i`` goes into the ``i``-th largest region.

Input
    ``results['gt_seg_map']``: the (H_gt, W_gt) integer class map as mmseg's ``LoadAnnotations``
    leaves it (``reduce_zero_label`` already applied: classes ``0 .. C-1``, ``ignore_index``
    unlabelled); ``results['img_shape']``: (H_img, W_img) of the image at this point of the pipeline
    (absent, before any image is loaded: the gt's own shape).

Regions
    The 8-connected components (``scipy.ndimage.label``; pixels touching at a corner are one
    region) of each class present, ignore pixels and the classes in ``skip_classes`` excluded, and
    regions of fewer than ``min_region_pixels`` pixels dropped. Larger regions come first; among
    regions of equal size, the one whose first pixel comes first in raster order.

Point in a region
    Its interior point: the pixel farthest (Euclidean, ``scipy.ndimage.distance_transform_edt``)
    from every pixel outside the region, the image border counting as outside; the first such
    pixel in raster order. With ``jitter=True`` (training) the point is drawn uniformly, with
    ``np.random`` (mmengine seeds it per worker), among the region's pixels at least half that
    maximum distance from the outside.

How many
    ``num_clicks``: an int (fixed, for testing) or a ``(low, high)`` pair drawn uniformly per
    sample, both ends included (training; ``low`` may be 0 so the model also learns without
    clicks); never more than there are regions, so ``K`` may be 0.

Output
    ``results['clicks']``: ``np.float32`` array of shape (K, 3), rows ``(x, y, label)``: ``x`` the
    column and ``y`` the row in the image's pixel coordinates, pixel centres aligned: gt pixel
    ``(r, c)`` becomes ``((c + 0.5) * W_img / W_gt - 0.5, (r + 0.5) * H_img / H_gt - 0.5)``, the
    same pixel when the shapes agree. Our test pipelines load the label map after ``Resize``, so
    there the gt has the stored size and the image the resized one. ``label`` is the class of the
    clicked pixel: a positive click for that class (in a binary task, a click labelled 0 is a
    negative click).

In a pipeline
    Put it after ``LoadAnnotations`` and after every transform that moves pixels (``RandomResize``,
    ``RandomCrop``, ``RandomFlip``), which change the label map but not the clicks, and before
    ``PackSegInputs``. ``PackSegInputs`` copies into the data sample's metainfo only its
    ``meta_keys``, so the config lists mmseg's default ones and ``'clicks'``; the model then reads
    ``data_sample.clicks``::

        dict(type='SampleClicks', num_clicks=(0, 5), jitter=True),
        dict(type='PackSegInputs',
             meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
                        'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label', 'clicks')),
"""
import numbers
import hashlib
import os.path as osp

import numpy as np
from scipy import ndimage

from .errors import DataError

# 8-connectivity: a region that touches itself only at a corner is still one region.
CONNECTIVITY = np.ones((3, 3), dtype=bool)


def _check_count(name, value, owner='SampleClicks'):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DataError(f'{owner}: {name} must be an int, got {value!r}; give an int or a '
                        f'(low, high) pair of ints.')
    if value < 0:
        raise DataError(f'{owner}: {name} must be >= 0, got {value}.')
    return int(value)


def parse_num_clicks(num_clicks, owner='SampleClicks'):
    """``(low, high)``, inclusive, from an int or a pair; a bad value raises, naming it."""
    if isinstance(num_clicks, (tuple, list)):
        if len(num_clicks) != 2:
            raise DataError(f'{owner}: num_clicks must be an int or a (low, high) pair, got '
                            f'{num_clicks!r}.')
        low = _check_count('num_clicks low', num_clicks[0], owner)
        high = _check_count('num_clicks high', num_clicks[1], owner)
        if low > high:
            raise DataError(f'{owner}: num_clicks low {low} > high {high}; give (low, high) '
                            f'with low <= high.')
        return low, high
    count = _check_count('num_clicks', num_clicks, owner)
    return count, count


def draw_count(low, high):
    return low if low == high else np.random.randint(low, high + 1)


def single_channel_labels(results, owner):
    """``results['gt_seg_map']``, checked to be there and single-channel."""
    labels = results.get('gt_seg_map')
    if labels is None:
        raise DataError(f'{owner} found no gt_seg_map in the results: put {owner} after '
                        f'LoadAnnotations in the pipeline.')
    if labels.ndim != 2:
        path = results.get('seg_map_path', '<label map>')
        raise DataError(f'{owner} needs a single-channel label map; {path} has shape '
                        f'{tuple(labels.shape)}: save it single-channel (PIL mode "L").')
    return labels


def find_regions(labels, ignore_index=255, skip_classes=(), min_region_pixels=1, limit=None):
    """The click regions of a class map, largest first (at most ``limit``): a list of
    ``(class, box, mask)``, ``box`` the region's bounding box as a pair of slices of ``labels``,
    ``mask`` the region within it."""
    candidates = []  # (-size, first pixel in raster order, class, component id, components)
    excluded = set(skip_classes) | {ignore_index}
    for cls in np.unique(labels):
        if cls in excluded:
            continue
        components, _ = ndimage.label(labels == cls, structure=CONNECTIVITY)
        ids, first_pixels, sizes = np.unique(components, return_index=True, return_counts=True)
        for component, first_pixel, size in zip(ids, first_pixels, sizes):
            if component != 0 and size >= min_region_pixels:
                candidates.append((-int(size), int(first_pixel), int(cls), int(component),
                                   components))
    candidates.sort(key=lambda candidate: candidate[:2])
    regions = []
    for _, _, cls, component, components in candidates[:limit]:
        # the box of one component: find_objects over the components up to it
        box = ndimage.find_objects(components, max_label=component)[component - 1]
        regions.append((cls, box, components[box] == component))
    return regions


def distance_to_outside(mask):
    """Each pixel's Euclidean distance to the nearest pixel outside ``mask``, the border counting
    as outside.

    Exact for a region's bounding box too: the ring of padding around the box is outside the
    region, and the outside pixel nearest to a point in the box is never beyond that ring.
    """
    return ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]


def interior_point(mask, jitter=False):
    """(row, column) in ``mask`` of its interior point; drawn among the deep pixels if
    ``jitter``."""
    distance = distance_to_outside(mask)
    deepest = distance.max()
    if jitter:
        # the box's pixels outside the region are 0 deep, below any half maximum (>= 0.5)
        rows, cols = np.nonzero(distance >= deepest / 2)
        pick = np.random.randint(len(rows))
        return int(rows[pick]), int(cols[pick])
    # argmax returns the first maximum in raster (C) order
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(row), int(col)


def click_in_image(cls, box, mask, gt_shape, img_shape, jitter=False):
    """The click ``(x, y, cls)`` at the interior point of a ``find_regions`` region, in the image's
    pixels: the label map's pixel centres mapped onto the image's (module docstring, Output)."""
    row, col = interior_point(mask, jitter)
    gt_height, gt_width = gt_shape[:2]
    img_height, img_width = img_shape[:2]
    return ((col + box[1].start + 0.5) * img_width / gt_width - 0.5,
            (row + box[0].start + 0.5) * img_height / gt_height - 0.5, cls)


class SampleClicks:
    """Clicks sampled from the ground truth into ``results['clicks']``; see the module docstring."""

    def __init__(self, num_clicks=1, jitter=False, min_region_pixels=1, skip_classes=(),
                 ignore_index=255):
        self.num_clicks = num_clicks
        self.low, self.high = parse_num_clicks(num_clicks)
        self.jitter = bool(jitter)
        self.min_region_pixels = _check_count('min_region_pixels', min_region_pixels)
        self.skip_classes = tuple(skip_classes)
        self.ignore_index = ignore_index

    def __call__(self, results):
        labels = single_channel_labels(results, 'SampleClicks')
        wanted = draw_count(self.low, self.high)
        clicks = np.zeros((0, 3), dtype=np.float32)
        if wanted > 0:
            regions = find_regions(labels, self.ignore_index, self.skip_classes,
                                   self.min_region_pixels, limit=wanted)
            img_shape = results.get('img_shape', labels.shape)
            rows = [click_in_image(cls, box, mask, labels.shape, img_shape, self.jitter)
                    for cls, box, mask in regions]
            if rows:
                clicks = np.array(rows, dtype=np.float32)
        results['clicks'] = clicks
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(num_clicks={self.num_clicks!r}, jitter={self.jitter}, '
                f'min_region_pixels={self.min_region_pixels}, '
                f'skip_classes={self.skip_classes!r}, ignore_index={self.ignore_index})')


class SelectObject:
    """One object of the label map as the target, and clicks on it (interactive single-object
    segmentation, RITM's and SAM's setting): the clicks are what tells the model which object.

    Objects are ``find_regions``' regions (8-connected components of one class), without
    ``skip_classes`` (the background) and ``ignore_index``. ``choose='random'`` (training) draws
    one uniformly (``np.random``); ``choose='by_name'`` (testing) takes the one at index
    md5(the image's file name) mod the number of objects, largest first: a fixed object per
    image, which the image alone does not give away. The label map becomes 1 on the object and 0
    elsewhere, ignore pixels kept; ``results['clicks']`` gets ``num_clicks`` (an int or a (low,
    high) pair) clicks labelled 1, the first at the object's interior point and the others
    jittered inside it as ``SampleClicks`` jitters (all of them with ``jitter=True``), in the
    image's pixels as ``SampleClicks`` maps them. An image without objects keeps no target (all
    0) and gets no clicks. Put it where ``SampleClicks`` goes, with a binary model
    (``num_classes=2``).
    """

    CHOICES = ('random', 'by_name')

    def __init__(self, choose='random', num_clicks=1, jitter=False, skip_classes=(0, ),
                 min_region_pixels=1, ignore_index=255):
        if choose not in self.CHOICES:
            raise DataError(f'SelectObject: choose={choose!r} is not one of {self.CHOICES}; '
                            f'random for training, by_name for testing.')
        self.choose = choose
        self.num_clicks = num_clicks
        self.low, self.high = parse_num_clicks(num_clicks, 'SelectObject')
        self.jitter = bool(jitter)
        self.skip_classes = tuple(skip_classes)
        self.min_region_pixels = _check_count('min_region_pixels', min_region_pixels,
                                              'SelectObject')
        self.ignore_index = ignore_index

    def pick(self, count, results):
        if self.choose == 'random':
            return np.random.randint(count)
        name = osp.basename(results.get('img_path') or results.get('seg_map_path') or '')
        return int(hashlib.md5(name.encode(), usedforsecurity=False).hexdigest(), 16) % count

    def __call__(self, results):
        labels = single_channel_labels(results, 'SelectObject')
        regions = find_regions(labels, self.ignore_index, self.skip_classes,
                               self.min_region_pixels)
        target = np.where(labels == self.ignore_index, labels, 0).astype(labels.dtype)
        clicks = np.zeros((0, 3), dtype=np.float32)
        if regions:
            _, box, mask = regions[self.pick(len(regions), results)]
            target[box][mask] = 1
            img_shape = results.get('img_shape', labels.shape)
            rows = [click_in_image(1, box, mask, labels.shape, img_shape,
                                   self.jitter or index > 0)
                    for index in range(draw_count(self.low, self.high))]
            if rows:
                clicks = np.array(rows, dtype=np.float32)
        results['gt_seg_map'] = target
        results['clicks'] = clicks
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(choose={self.choose!r}, num_clicks={self.num_clicks!r}, '
                f'jitter={self.jitter}, skip_classes={self.skip_classes!r}, '
                f'min_region_pixels={self.min_region_pixels}, ignore_index={self.ignore_index})')
