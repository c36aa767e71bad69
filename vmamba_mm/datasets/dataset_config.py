"""Reading a dataset config as the Runner will build it: its leaf datasets, their classes, paths."""
import importlib
import importlib.util
import os.path as osp


def leaf_datasets(dataset_cfg):
    """The leaf datasets of a dataset config, through RepeatDataset/ConcatDataset-style wrappers."""
    if not isinstance(dataset_cfg, dict):
        return
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        for inner in dataset_cfg['datasets']:
            yield from leaf_datasets(inner)
    elif isinstance(dataset_cfg.get('dataset'), dict):
        yield from leaf_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def dataset_class(dataset_cfg, scope):
    """The registered class a dataset config builds, or None if the registry does not know it."""
    type_ = dataset_cfg.get('type')
    if not isinstance(type_, str):
        return type_ if isinstance(type_, type) else None
    if '.' in type_:
        scope, type_ = type_.split('.', 1)
    try:
        registry = importlib.import_module(f'{scope}.registry').DATASETS
    except (ImportError, TypeError):
        return None
    return registry.get(type_)


def is_subclass_of(cls, module, name):
    if cls is None or importlib.util.find_spec(module.split('.')[0]) is None:
        return False  # that task package is not installed, so cls cannot be one of its classes
    return issubclass(cls, getattr(importlib.import_module(module), name))


def under_data_root(dataset_cfg, path):
    root = dataset_cfg.get('data_root') or ''
    return path if not path or osp.isabs(path) else osp.join(root, path)


def config_classes(dataset_cfg, cls):
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return tuple(metainfo['classes'])
    return tuple((getattr(cls, 'METAINFO', None) or {}).get('classes') or ()) or None
