"""Whole-slide feature bags (``WSIFeatureDataset``, CLAM layout): ``features/``, ``labels.csv``,
``splits/splits_<k>.csv`` under ``data_root``.

Checked: missing folders and files, slides of the split without features or a label, labels
outside the classes, feature widths that differ between slides (h5 headers only) or from the
model's ``aggregator.in_features``, a ``num_classes`` that differs from the classes, the same
classes in every split.

A model whose ``aggregator.in_features`` is None gets the data's width here, before the Runner
builds it: mmengine reads every parameter's shape on building, which a lazy layer has not yet
(the same config then trains on 192-, 768- or 1024-d features).
"""
from ..class_agreement import SplitClasses
from ..errors import DataError
from .base import DatasetLayout, register_layout

CLASSES_FIX = 'give every split the same classes (or set classes= on each dataset)'


def _is_wsi_dataset(dataset_class):
    if dataset_class is None:
        return False
    from ..wsi import WSIFeatureDataset
    return issubclass(dataset_class, WSIFeatureDataset)


def _build(dataset_class, dataset_cfg):
    arguments = {key: value for key, value in dataset_cfg.items() if key not in ('type',
                                                                                    'pipeline')}
    return dataset_class(**arguments)


def _fit_input_width(model, width, data_root):
    aggregator = model.get('aggregator') if isinstance(model, dict) else None
    if not isinstance(aggregator, dict) or width is None:
        return
    if aggregator.get('in_features') is None:
        aggregator['in_features'] = width
    elif aggregator['in_features'] != width:
        raise DataError(f'model.aggregator.in_features is {aggregator["in_features"]} but the '
                        f'slides of {data_root} have {width}-d features; set it to {width} (or '
                        f'None: the width of the data), or use features from the model\'s '
                        f'encoder.')


@register_layout
class WSIFeatureBags(DatasetLayout):
    name = 'wsi'

    def matches(self, dataset_class, dataset_cfg):
        return _is_wsi_dataset(dataset_class)

    def check(self, cfg, split, dataset_cfg, dataset_class, agreement):
        dataset = _build(dataset_class, dataset_cfg)
        dataset.check_feature_widths()
        classes = tuple(dataset.metainfo['classes'])
        agreement.check(SplitClasses(split, classes, dataset.data_root, CLASSES_FIX))
        model = cfg.get('model') or {}
        _fit_input_width(model, dataset.metainfo['feature_dim'], dataset.data_root)
        num_classes = model.get('num_classes') if isinstance(model, dict) else None
        if num_classes is not None and num_classes != len(classes):
            raise DataError(f'model.num_classes is {num_classes} but {dataset.data_root} has '
                            f'{len(classes)} classes {list(classes)}; set --cfg-options '
                            f'model.num_classes={len(classes)}.')
        return None
