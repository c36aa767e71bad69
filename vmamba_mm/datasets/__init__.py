"""The data side: checks on a config's datasets before a run, and checks as each file loads.

- ``checks``: ``check_datasets``, run by the tools before the Runner is built; each dataset
  layout it knows is a file in ``layouts/`` (folder classification, COCO, segmentation);
- ``transforms``: ``RefuseEmptyFiles`` and ``ValidateSegLabels``, the checks that run as each
  file loads (registered by ``vmamba_mm.registry``);
- ``clicks``: ``SampleClicks``, the transform that samples click prompts from the ground truth,
  and ``SelectObject``, which makes one clicked object the target
  (registered by ``vmamba_mm.registry``; imported from there, as it needs scipy, which mmseg
  brings);
- ``errors``: ``DataError`` and ``describe_data_error``, the one line the tools print.
"""
from .checks import check_datasets
from .errors import DataError, describe_data_error
from .heads import check_loss_class_weights
from .transforms import (RefuseEmptyFiles, ValidateSegLabels, add_empty_file_checks,
                         add_seg_label_checks)

__all__ = [
    'check_datasets', 'check_loss_class_weights', 'DataError', 'describe_data_error',
    'RefuseEmptyFiles', 'ValidateSegLabels', 'add_empty_file_checks', 'add_seg_label_checks'
]
