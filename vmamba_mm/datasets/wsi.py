"""Whole-slide image (WSI) feature bags in the layout CLAM's feature extraction writes.

::

    data_root/features/<slide_id>.h5   datasets ``features`` (n, d), ``coords`` (n, 2): each
                                       patch's (x, y) top-left corner in level-0 pixels;
                                       ``coords.attrs['patch_size']`` as CLAM writes it
    data_root/features/<slide_id>.pt   or ``{'features': (n, d), 'coords': (n, 2)[, 'patch_size']}``
    data_root/labels.csv               header ``slide_id,label`` (label: a class name)
    data_root/splits/splits_<k>.csv    header ``,train,val,test``; each column a list of slide ids,
                                       shorter columns left empty

A slide's grid is built from its own coordinates (``coords // patch_size`` less the slide's
minimum), so any offset, extent or hole works. Only the index (paths and labels) is held; each
slide's file is read when the slide is drawn, and at most ``cache_bytes`` of slides are kept.

Each item is ``{'inputs': {'features': (n, d) float32, 'positions': (n, 2) int64 (row, col)},
'data_samples': DataSample}``; ``metainfo`` carries ``classes`` and ``feature_dim``.
"""
import csv
import os.path as osp
from collections import OrderedDict

import numpy as np
import torch
from mmengine.dataset import BaseDataset

from .errors import DataError

SPLITS = ('train', 'val', 'test')
FEATURE_SUFFIXES = ('.h5', '.pt')


def _require(path, what, fix):
    if not osp.exists(path):
        raise DataError(f'{what} not found: {path}; {fix}.')
    return path


def read_labels(labels_file):
    """{slide_id: class name} from ``labels.csv`` (header ``slide_id,label``)."""
    with open(labels_file, newline='') as handle:
        reader = csv.DictReader(handle)
        missing = {'slide_id', 'label'} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f'{labels_file} has no column(s) {sorted(missing)} (header: '
                            f'{reader.fieldnames}); its header must be slide_id,label.')
        labels = {}
        for row in reader:
            slide_id = (row['slide_id'] or '').strip()
            if slide_id:
                labels[slide_id] = (row['label'] or '').strip()
    return labels


def read_split(splits_file, split):
    """The slide ids of one column of a CLAM split file (empty cells are the padding of shorter
    columns)."""
    with open(splits_file, newline='') as handle:
        reader = csv.DictReader(handle)
        if split not in (reader.fieldnames or ()):
            raise DataError(f'{splits_file} has no {split!r} column (header: {reader.fieldnames});'
                            f' CLAM split files have the header ,train,val,test.')
        return [row[split].strip() for row in reader if (row[split] or '').strip()]


def grid_positions(coords, patch_size, source):
    """(row, col) of each patch on the slide's own grid, from level-0 (x, y) corners.

    Coordinates are taken relative to the slide's minimum so any offset works; a corner that is
    not a whole number of patches from it, or two patches in one cell, are refused.
    """
    coords = np.asarray(coords).astype(np.int64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise DataError(f'{source}: coords has shape {tuple(coords.shape)}, expected (n, 2) '
                        f'(x, y) corners.')
    if coords.shape[0] == 0:
        raise DataError(f'{source}: the slide has no patches; remove it from the splits.')
    relative = coords - coords.min(axis=0)
    off_grid = np.nonzero((relative % patch_size).any(axis=1))[0]
    if off_grid.size:
        first = off_grid[0]
        raise DataError(f'{source}: {off_grid.size} patch corner(s) are not on the patch grid of '
                        f'patch_size {patch_size}, e.g. patch {first} at {coords[first].tolist()}; '
                        f'set the dataset\'s patch_size to the step between patches.')
    cols, rows = (relative // patch_size).T
    positions = np.stack([rows, cols], axis=1)
    width = int(cols.max()) + 1
    flat = rows * width + cols
    if np.unique(flat).size != flat.size:
        raise DataError(f'{source}: two patches fall in one grid cell at patch_size '
                        f'{patch_size}; the coords hold duplicates or patch_size is too large.')
    return torch.from_numpy(positions)


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # named: the .h5 layout needs it, .pt files do not
        raise DataError('reading .h5 feature files needs h5py: pip install h5py') from exc
    return h5py


def feature_width(path):
    """The feature width of a slide file, reading only the h5 header (None for .pt: it has no
    header to read without loading)."""
    if not path.endswith('.h5'):
        return None
    with _h5py().File(path, 'r') as handle:
        if 'features' not in handle:
            raise DataError(f'{path} has no "features" dataset; CLAM files hold features and '
                            f'coords.')
        return int(handle['features'].shape[1])


def read_slide(path, patch_size=None):
    """(features (n, d) float32 tensor, coords (n, 2) array, patch size) of one slide file.

    ``patch_size`` given wins over the one stored with the coordinates."""
    if path.endswith('.h5'):
        with _h5py().File(path, 'r') as handle:
            for key in ('features', 'coords'):
                if key not in handle:
                    raise DataError(f'{path} has no "{key}" dataset; CLAM files hold features '
                                    f'and coords.')
            features = torch.from_numpy(np.asarray(handle['features'], dtype=np.float32))
            coords = np.asarray(handle['coords'])
            stored = handle['coords'].attrs.get('patch_size')
    else:
        bag = torch.load(path, map_location='cpu', weights_only=True)
        if not isinstance(bag, dict) or not {'features', 'coords'} <= set(bag):
            raise DataError(f'{path} does not hold a dict with "features" and "coords"; save '
                            f'{{"features": (n, d), "coords": (n, 2)}} with torch.save.')
        features = torch.as_tensor(bag['features']).float()
        coords = np.asarray(torch.as_tensor(bag['coords']))
        stored = bag.get('patch_size')
    size = patch_size if patch_size is not None else stored
    if size is None:
        raise DataError(f'{path} does not say its patch size (coords.attrs["patch_size"] or a '
                        f'"patch_size" key); set the dataset\'s patch_size.')
    if features.ndim != 2 or features.shape[0] != len(coords):
        raise DataError(f'{path}: features have shape {tuple(features.shape)} but there are '
                        f'{len(coords)} coords; expected (n, d) features for n coords.')
    return features, coords, int(size)


class WSIFeatureDataset(BaseDataset):
    """Slides of one split of one fold, as CLAM lays them out (see the module docstring).

    Args:
        data_root: the folder holding ``features/``, ``labels.csv`` and ``splits/``.
        split: 'train', 'val' or 'test': the column of the split file read.
        fold: k of ``splits/splits_<k>.csv``.
        classes: the class names in label order; default the sorted distinct labels of
            ``labels.csv``.
        patch_size: the step between patches in level-0 pixels; default the one stored with each
            slide's coords.
        feature_dim: the feature width the model expects; default the first slide's. A slide of
            another width is refused when it is read.
        cache_bytes: slides kept in memory after their first read (0: none).
    """

    def __init__(self, data_root, split='train', fold=0, classes=None, patch_size=None,
                 feature_dim=None, cache_bytes=0, pipeline=(), test_mode=False, lazy_init=False,
                 **kwargs):
        if split not in SPLITS:
            raise DataError(f'WSIFeatureDataset: split {split!r} is not one of {SPLITS}.')
        self.split, self.fold, self.patch_size = split, fold, patch_size
        self.cache_bytes = cache_bytes
        self._cache = OrderedDict()
        self._cached_bytes = 0
        self._wanted_classes = tuple(classes) if classes is not None else None
        self._wanted_dim = feature_dim
        super().__init__(data_root=data_root, pipeline=list(pipeline), test_mode=test_mode,
                         lazy_init=lazy_init, serialize_data=False, **kwargs)

    # The index ----------------------------------------------------------------------------
    def _index(self):
        root = self.data_root
        _require(root, 'WSI data_root', 'set dataset.data_root to the folder holding features/, '
                 'labels.csv and splits/')
        feature_dir = _require(osp.join(root, 'features'), 'feature folder',
                               'put one <slide_id>.h5 or .pt per slide there')
        labels = read_labels(_require(osp.join(root, 'labels.csv'), 'label file',
                                      'write labels.csv with the header slide_id,label'))
        splits_file = _require(osp.join(root, 'splits', f'splits_{self.fold}.csv'),
                               f'split file of fold {self.fold}',
                               'write CLAM split files (header ,train,val,test) or set the fold')
        slide_ids = read_split(splits_file, self.split)
        classes = self._wanted_classes or tuple(sorted(set(labels.values())))
        entries = []
        for slide_id in slide_ids:
            paths = [osp.join(feature_dir, slide_id + suffix) for suffix in FEATURE_SUFFIXES]
            found = [path for path in paths if osp.isfile(path)]
            if not found:
                raise DataError(f'slide {slide_id!r} of the {self.split} split of {splits_file} '
                                f'has no features: neither {paths[0]} nor {paths[1]} exists.')
            if slide_id not in labels:
                raise DataError(f'slide {slide_id!r} of the {self.split} split of {splits_file} '
                                f'has no label in {osp.join(root, "labels.csv")}; add a row.')
            if labels[slide_id] not in classes:
                raise DataError(f'slide {slide_id!r} has the label {labels[slide_id]!r}, which '
                                f'is not one of the classes {list(classes)}; fix labels.csv or '
                                f'the dataset\'s classes.')
            entries.append(dict(slide_id=slide_id, feature_path=found[0],
                                gt_label=classes.index(labels[slide_id])))
        return classes, entries

    def load_data_list(self):
        classes, entries = self._index()
        width = self._wanted_dim
        if width is None and entries:
            width = feature_width(entries[0]['feature_path'])
            if width is None:  # a .pt file: its width is known only once read
                width = int(self._read(entries[0])[0].shape[1])
        self._metainfo.update(classes=classes, feature_dim=width)
        return entries

    def check_feature_widths(self):
        """Every slide's width against ``metainfo['feature_dim']``: the h5 headers only, so it
        is cheap; .pt slides are checked when read."""
        for entry in self.data_list:
            self._check_width(entry, feature_width(entry['feature_path']))

    def _check_width(self, entry, width):
        expected = self._metainfo.get('feature_dim')
        if width is not None and expected is not None and width != expected:
            raise DataError(f'{entry["feature_path"]} has {width}-d features but the dataset '
                            f'expects {expected} (feature_dim); extract every slide with one '
                            f'encoder, or set feature_dim to the model\'s input width.')

    # One slide ----------------------------------------------------------------------------
    def _read(self, entry):
        path = entry['feature_path']
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        features, coords, size = read_slide(path, self.patch_size)
        slide = (features, grid_positions(coords, size, path))
        slide_bytes = features.numel() * 4 + slide[1].numel() * 8
        if self.cache_bytes and slide_bytes <= self.cache_bytes:
            self._cache[path] = slide
            self._cached_bytes += slide_bytes
            while self._cached_bytes > self.cache_bytes:
                _, (old_features, old_positions) = self._cache.popitem(last=False)
                self._cached_bytes -= old_features.numel() * 4 + old_positions.numel() * 8
        return slide

    def prepare_data(self, idx):
        from mmpretrain.structures import DataSample
        entry = self.get_data_info(idx)
        features, positions = self._read(entry)
        self._check_width(entry, int(features.shape[1]))
        sample = DataSample(metainfo=dict(slide_id=entry['slide_id'],
                                          feature_path=entry['feature_path'],
                                          num_classes=len(self._metainfo['classes'])))
        sample.set_gt_label(entry['gt_label'])
        results = dict(inputs=dict(features=features, positions=positions), data_samples=sample)
        return self.pipeline(results)

    def get_gt_labels(self):
        return np.array([entry['gt_label'] for entry in self.data_list])
