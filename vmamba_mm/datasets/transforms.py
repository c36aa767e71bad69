"""Checks that run as data transforms, on each file as it loads, naming the file.

``check_datasets`` (``vmamba_mm.datasets.checks``) inserts them into the pipelines it checks:
``RefuseEmptyFiles`` before ``LoadImageFromFile`` and, for segmentation, ``ValidateSegLabels``
after ``LoadAnnotations``.
"""
import os.path as osp

import numpy as np

from .errors import DataError


def _is_load_annotations(transform):
    return isinstance(transform, dict) and str(transform.get('type', '')).endswith(
        'LoadAnnotations')


def _is_load_image(transform):
    return isinstance(transform, dict) and str(transform.get('type', '')).endswith(
        'LoadImageFromFile')


# Transforms that rewrite the label map into the model's classes (SelectObject: the dataset's
# classes into object / background): the check goes after them, not after LoadAnnotations.
LABEL_REWRITERS = ('SelectObject', )


def add_seg_label_checks(pipeline, num_classes, ignore_index=255):
    """Insert ValidateSegLabels after the pipeline's LoadAnnotations (or after the last
    ``LABEL_REWRITERS`` transform that follows it), once.

    In a TestTimeAug the check becomes a stage of its own after the stage that loads the labels,
    so the number of augmented views stays the same.
    """
    check = dict(type='ValidateSegLabels', num_classes=num_classes, ignore_index=ignore_index)
    if not isinstance(pipeline, list) or 'ValidateSegLabels' in str(pipeline):
        return False
    for index, transform in enumerate(pipeline):
        if _is_load_annotations(transform):
            rewriters = [later for later in range(index + 1, len(pipeline))
                         if isinstance(pipeline[later], dict) and
                         pipeline[later].get('type') in LABEL_REWRITERS]
            pipeline.insert((rewriters[-1] if rewriters else index) + 1, check)
            return True
        if isinstance(transform, dict) and transform.get('type') == 'TestTimeAug':
            stages = transform.get('transforms', [])
            for stage_index, stage in enumerate(stages):
                if any(_is_load_annotations(t) for t in stage):
                    stages.insert(stage_index + 1, [check])
                    return True
    return False


def add_empty_file_checks(pipeline):
    """Insert RefuseEmptyFiles before the pipeline's LoadImageFromFile, once."""
    if not isinstance(pipeline, list) or 'RefuseEmptyFiles' in str(pipeline):
        return False
    for index, transform in enumerate(pipeline):
        if _is_load_image(transform):
            pipeline.insert(index, dict(type='RefuseEmptyFiles'))
            return True
    return False


class RefuseEmptyFiles:
    """Fail, naming it, on an image or label map file that is empty, before the loader reads it.

    OpenCV refuses zero bytes with ``!buf.empty()`` and no file name. The checks before the run
    name the empty files there are then; this names one emptied during the run (an interrupted
    copy, a full disk). Registered in mmengine's root registry, so every task's pipelines find it.
    """

    PATH_KEYS = {'img_path': 'image', 'seg_map_path': 'label map'}

    def __call__(self, results):
        for key, kind in self.PATH_KEYS.items():
            path = results.get(key)
            if isinstance(path, str) and osp.isfile(path) and osp.getsize(path) == 0:
                raise DataError(f'{kind} file is empty (0 bytes): {path}; replace it, or remove '
                                f'it and its annotation.')
        return results

    def __repr__(self):
        return f'{type(self).__name__}()'


class ValidateSegLabels:
    """Fail on a label map that is not one class index per pixel in ``0 .. num_classes-1``.

    A map of several channels (saved as RGB) otherwise fails in the loss with a message about
    spatial targets; out-of-range labels crash the loss with an index error far from the file (a
    device-side assert on a GPU), or are silently dropped by the IoU metric.
    """

    def __init__(self, num_classes, ignore_index=255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, results):
        labels = results.get('gt_seg_map')
        if labels is None:
            return results
        path = results.get('seg_map_path', '<label map>')
        if labels.ndim != 2:
            channels = labels.shape[-1] if labels.ndim == 3 else '?'
            raise DataError(f'label map {path} has {channels} channels (shape '
                            f'{tuple(labels.shape)}), not one class index per pixel: save it '
                            f'single-channel (PIL mode "L"); a palette PNG comes out in colour '
                            f'with the cv2 backend: set imdecode_backend="pillow" in '
                            f'LoadAnnotations.')
        values = np.unique(labels)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size or (values < 0).any():
            bad = np.concatenate([values[values < 0], bad])
            shift = (' (after reduce_zero_label, which maps file value v to v-1 and 0 to '
                     f'{self.ignore_index})' if results.get('reduce_zero_label') else '')
            raise DataError(f'label map {path} has labels {bad.tolist()[:10]} outside the '
                            f'{self.num_classes} classes 0..{self.num_classes - 1} and ignore '
                            f'{self.ignore_index}{shift}; fix the file or the classes.')
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
