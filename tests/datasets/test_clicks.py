"""SampleClicks on hand-built label maps, whose regions, sizes and interior points are worked out
by hand in the comments."""
import hashlib

import numpy as np
import pytest
from PIL import Image

from vmamba_mm.datasets import DataError
from vmamba_mm.datasets.clicks import SampleClicks, SelectObject

IGNORE = 255


def three_region_map():
    """9 rows x 14 columns: class 1 fills columns 0-8 (a 9x9 square, 81 pixels); class 2 is the
    3x3 square rows 3-5, columns 10-12 (9 pixels); class 0 is the ring around it in columns 9-13
    (45 - 9 = 36 pixels)."""
    labels = np.zeros((9, 14), dtype=np.uint8)
    labels[:, :9] = 1
    labels[3:6, 10:13] = 2
    return labels


# (x, y, label) in the order of the regions' sizes (81, 36, 9):
# - class 1: the square's centre (row 4, column 4), 5 pixels from the border and from column 9;
# - class 0: the ring is one pixel wide on the sides (every pixel of columns 9 and 13 touches
#   class 1 or the border) and three pixels wide above and below class 2; there row 1 lies 2 from
#   the border and from class 2, and columns 10-12 lie 2 from class 1 or the border, so the
#   deepest pixels are 2 deep and the first in raster order is (row 1, column 10);
# - class 2: its centre (row 4, column 11).
THREE_REGION_CLICKS = [[4, 4, 1], [10, 1, 0], [11, 4, 2]]


def sample(labels, img_shape=None, **options):
    results = dict(gt_seg_map=labels, img_shape=img_shape or labels.shape)
    return SampleClicks(**options)(results)['clicks']


def test_clicks_go_to_the_largest_regions_first_at_their_interior_points():
    labels = three_region_map()
    clicks = sample(labels, num_clicks=3)
    assert clicks.dtype == np.float32 and clicks.shape == (3, 3)
    np.testing.assert_array_equal(clicks, THREE_REGION_CLICKS)
    columns, rows = clicks[:, 0].astype(int), clicks[:, 1].astype(int)
    np.testing.assert_array_equal(labels[rows, columns], clicks[:, 2])
    # never more clicks than regions; none asked, none given
    np.testing.assert_array_equal(sample(labels, num_clicks=7), THREE_REGION_CLICKS)
    np.testing.assert_array_equal(sample(labels, num_clicks=1), THREE_REGION_CLICKS[:1])
    none = sample(labels, num_clicks=0)
    assert none.shape == (0, 3) and none.dtype == np.float32


def test_a_drawn_number_of_clicks_covers_the_range_and_keeps_the_order():
    labels = three_region_map()
    np.random.seed(0)
    counts = set()
    for _ in range(60):
        clicks = sample(labels, num_clicks=(0, 3))
        assert clicks.tolist() == THREE_REGION_CLICKS[:len(clicks)]
        counts.add(len(clicks))
    assert counts == {0, 1, 2, 3}
    assert {len(sample(labels, num_clicks=[2, 2])) for _ in range(5)} == {2}


def test_regions_below_min_region_pixels_get_no_click():
    labels = three_region_map()
    np.testing.assert_array_equal(sample(labels, num_clicks=3, min_region_pixels=9),
                                  THREE_REGION_CLICKS)
    np.testing.assert_array_equal(sample(labels, num_clicks=3, min_region_pixels=10),
                                  THREE_REGION_CLICKS[:2])
    assert sample(labels, num_clicks=3, min_region_pixels=82).shape == (0, 3)


def test_separate_components_of_one_class_get_separate_clicks():
    labels = np.full((10, 10), IGNORE, dtype=np.uint8)
    labels[0:4, 0:4] = 1  # 16 pixels; deepest 2, first at (row 1, column 1)
    labels[6:9, 6:9] = 1  # 9 pixels, centre (row 7, column 7)
    np.testing.assert_array_equal(sample(labels, num_clicks=3), [[1, 1, 1], [7, 7, 1]])
    # two squares touching at a corner are one region (8-connectivity): one click, in the first
    # deepest pixel of the 8-pixel union, (row 0, column 0)
    labels = np.full((6, 6), IGNORE, dtype=np.uint8)
    labels[0:2, 0:2] = 1
    labels[2:4, 2:4] = 1
    np.testing.assert_array_equal(sample(labels, num_clicks=2), [[0, 0, 1]])


def test_ignore_pixels_and_skipped_classes_get_no_click():
    labels = np.full((8, 8), IGNORE, dtype=np.uint8)
    labels[5:8, 0:3] = 0  # 9 pixels, centre (row 6, column 1)
    labels[0:2, 4:8] = 3  # 8 pixels, all 1 deep: the first, (row 0, column 4)
    clicks = sample(labels, num_clicks=5)
    np.testing.assert_array_equal(clicks, [[1, 6, 0], [4, 0, 3]])
    assert IGNORE not in clicks[:, 2]
    np.testing.assert_array_equal(sample(labels, num_clicks=5, skip_classes=(0, )), [[4, 0, 3]])
    # another ignore index: 255 is then a class like any other, the 47 pixels around the squares
    assert sample(labels, num_clicks=5, ignore_index=3)[:, 2].tolist() == [IGNORE, 0]
    np.testing.assert_array_equal(sample(three_region_map(), num_clicks=3, skip_classes=[0]),
                                  [THREE_REGION_CLICKS[0], THREE_REGION_CLICKS[2]])


def test_jittered_clicks_stay_in_the_deep_half_of_their_region():
    labels = np.full((12, 12), IGNORE, dtype=np.uint8)
    labels[1:11, 1:11] = 4  # a 10x10 square (rows and columns 1-10)
    labels[0, 0] = 5        # a single pixel
    # In a square the nearest outside pixel lies straight up, down, left or right, so a pixel's
    # depth is its least distance to a side plus one: at most 5 here (rows/columns 5-6); depth
    # >= 2.5 keeps rows and columns 3-8, a 6x6 block.
    np.random.seed(1)
    seen = set()
    for _ in range(200):
        clicks = sample(labels, num_clicks=2, jitter=True)
        assert clicks[:, 2].tolist() == [4, 5]
        x, y = int(clicks[0, 0]), int(clicks[0, 1])
        assert clicks[0, 0] == x and clicks[0, 1] == y
        assert 3 <= x <= 8 and 3 <= y <= 8, (x, y)
        np.testing.assert_array_equal(clicks[1], [0, 0, 5])
        seen.add((x, y))
    assert len(seen) == 36  # uniform over the block: every pixel of it drawn in 200 tries


def brute_force_depth(region):
    """Each pixel's least Euclidean distance to a pixel outside ``region`` or to the ring just
    beyond the map's border, by trying them all."""
    height, width = region.shape
    ring = [(r, c) for r in range(-1, height + 1) for c in range(-1, width + 1)
            if r in (-1, height) or c in (-1, width)]
    outside = np.concatenate([np.argwhere(~region), np.array(ring)])
    inside = np.argwhere(region)
    gaps = inside[:, None, :] - outside[None, :, :]
    depth = np.zeros(region.shape)
    depth[region] = np.sqrt((gaps ** 2).sum(-1)).min(1)
    return depth


def test_interior_points_agree_with_a_brute_force_depth_on_random_maps():
    from scipy import ndimage
    rng = np.random.default_rng(3)
    for _ in range(4):
        # blobs: a coarse random map of classes 0-2 and ignore, blown up 3x, with speckle
        labels = np.kron(rng.choice([0, 1, 2, IGNORE], size=(6, 7)), np.ones((3, 3), np.int64))
        labels[rng.random(labels.shape) < 0.05] = 1
        clicks = sample(labels.astype(np.uint8), num_clicks=50)
        sizes = []
        for x, y, cls in clicks.astype(int):
            assert labels[y, x] == cls != IGNORE
            components, _ = ndimage.label(labels == cls, structure=np.ones((3, 3)))
            region = components == components[y, x]
            depth = brute_force_depth(region)
            first_deepest = np.unravel_index(np.argmax(depth), depth.shape)
            assert (y, x) == first_deepest
            sizes.append(region.sum())
        assert sizes == sorted(sizes, reverse=True)
        regions = sum(ndimage.label((labels == cls), structure=np.ones((3, 3)))[1]
                      for cls in (0, 1, 2))
        assert len(clicks) == regions


def test_clicks_are_in_the_image_coordinates_when_the_image_is_resized():
    labels = np.full((8, 8), IGNORE, dtype=np.uint8)
    labels[1:4, 4:7] = 1  # centre: gt row 2, column 5
    np.testing.assert_array_equal(sample(labels, num_clicks=1), [[5, 2, 1]])
    # twice the size: x = (5 + 0.5) * 16 / 8 - 0.5 = 10.5, y = (2 + 0.5) * 16 / 8 - 0.5 = 4.5
    np.testing.assert_array_equal(sample(labels, img_shape=(16, 16), num_clicks=1),
                                  [[10.5, 4.5, 1]])
    # 16 rows, 24 columns: x = 5.5 * 3 - 0.5 = 16, y = 4.5; a 3-d shape is read as (H, W)
    np.testing.assert_array_equal(sample(labels, img_shape=(16, 24, 3), num_clicks=1),
                                  [[16, 4.5, 1]])
    # half the size: x = 5.5 / 2 - 0.5 = 2.25, y = 2.5 / 2 - 0.5 = 0.75
    np.testing.assert_array_equal(sample(labels, img_shape=(4, 4), num_clicks=1),
                                  [[2.25, 0.75, 1]])


def test_misplaced_transform_and_bad_arguments_are_named():
    with pytest.raises(DataError, match='SampleClicks found no gt_seg_map.*after LoadAnnotations'):
        SampleClicks()(dict(img_shape=(4, 4)))
    with pytest.raises(DataError, match='single-channel'):
        SampleClicks()(dict(gt_seg_map=np.zeros((4, 4, 3), np.uint8), img_shape=(4, 4)))
    for bad, message in ((-1, 'num_clicks must be >= 0'), ((3, 1), 'low 3 > high 1'),
                         (1.5, 'num_clicks must be an int'), ('2', 'num_clicks must be an int'),
                         (True, 'num_clicks must be an int'), ((1, ), 'num_clicks must be an int'),
                         ((0, -2), 'num_clicks high must be >= 0')):
        with pytest.raises(DataError, match=message):
            SampleClicks(num_clicks=bad)
    with pytest.raises(DataError, match='min_region_pixels must be >= 0'):
        SampleClicks(min_region_pixels=-1)
    assert repr(SampleClicks(num_clicks=(0, 5), jitter=True)) == (
        'SampleClicks(num_clicks=(0, 5), jitter=True, min_region_pixels=1, skip_classes=(), '
        'ignore_index=255)')


def test_clicks_reach_the_data_sample_through_an_mmseg_test_pipeline(tmp_path):
    import vmamba_mm.registry
    vmamba_mm.registry.register_all_modules()
    from mmcv.transforms import Compose
    from mmseg.registry import TRANSFORMS

    labels = np.full((8, 8), IGNORE, dtype=np.uint8)
    labels[1:4, 4:7] = 1  # centre: gt row 2, column 5
    labels[7, 0] = 2  # one pixel, under min_region_pixels
    Image.fromarray(labels).save(tmp_path / 'label.png')
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'image.png')
    meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
                 'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label', 'clicks')
    # as our test pipelines do: the label map is loaded after the image is resized
    pipeline = Compose([TRANSFORMS.build(step) for step in (
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(24, 16), keep_ratio=False),
        dict(type='LoadAnnotations'),
        dict(type='SampleClicks', num_clicks=2, min_region_pixels=2),
        dict(type='PackSegInputs', meta_keys=meta_keys))])
    packed = pipeline(dict(img_path=str(tmp_path / 'image.png'),
                           seg_map_path=str(tmp_path / 'label.png'), seg_fields=[],
                           reduce_zero_label=False))
    assert packed['inputs'].shape == (3, 16, 24)
    assert packed['data_samples'].gt_sem_seg.shape == (8, 8)
    # 16 rows, 24 columns from 8x8: x = (5 + 0.5) * 3 - 0.5 = 16, y = (2 + 0.5) * 2 - 0.5 = 4.5
    np.testing.assert_array_equal(packed['data_samples'].clicks, [[16, 4.5, 1]])


# SelectObject on three_region_map with the background class 0 skipped: the objects are class 1's
# square (81 pixels) and class 2's square (9 pixels), largest first.
def by_name(name):
    return int(hashlib.md5(name.encode()).hexdigest(), 16)


def select(labels, name, **options):
    results = dict(gt_seg_map=labels, img_shape=labels.shape, img_path=f'/data/images/{name}')
    results = SelectObject(**options)(results)
    return results['gt_seg_map'], results['clicks']


def test_the_selected_object_becomes_the_target_and_gets_the_click():
    labels = three_region_map()
    labels[0, 13] = IGNORE
    for name in ('a.png', 'b.png', 'c.png', 'd.png'):
        target, clicks = select(labels, name, choose='by_name')
        index = by_name(name) % 2  # the file name, not the folder
        expected_class, expected_click = [(1, [4, 4, 1]), (2, [11, 4, 1])][index]
        np.testing.assert_array_equal(
            target, np.where(labels == IGNORE, IGNORE, labels == expected_class))
        np.testing.assert_array_equal(clicks, [expected_click])
    assert {by_name(n) % 2 for n in ('a.png', 'b.png', 'c.png', 'd.png')} == {0, 1}


def test_random_objects_cover_every_object_and_extra_clicks_stay_inside():
    labels = three_region_map()
    np.random.seed(0)
    chosen = set()
    for _ in range(40):
        target, clicks = select(labels, 'x.png', choose='random', num_clicks=(0, 3))
        assert set(np.unique(target)) == {0, 1}
        chosen.add(int(labels[target == 1][0]))
        columns, rows = clicks[:, 0].astype(int), clicks[:, 1].astype(int)
        assert (target[rows, columns] == 1).all() and (clicks[:, 2] == 1).all()
    assert chosen == {1, 2}
    target, clicks = select(np.zeros((4, 4), np.uint8), 'x.png')
    assert not target.any() and clicks.shape == (0, 3)


def test_select_object_errors_name_the_setting():
    with pytest.raises(DataError, match=r"SelectObject: choose='largest' is not one of "
                                        r"\('random', 'by_name'\)"):
        SelectObject(choose='largest')
    with pytest.raises(DataError, match='SelectObject: num_clicks must be >= 0, got -1'):
        SelectObject(num_clicks=-1)
    with pytest.raises(DataError, match='SelectObject found no gt_seg_map.*after LoadAnnotations'):
        SelectObject()(dict(img_shape=(4, 4)))
