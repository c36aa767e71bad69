"""Building a shipped config's model on the real mm stack, as the config tests of the scan
families (configs/vmamba2d, configs/v2m, configs/ssd) do."""
import copy

import torch


def build_model(cfg):
    """``cfg.model`` (a loaded mmengine Config) built by the MODELS registry of its default scope
    (mmseg, mmdet or mmpretrain), with the config's data_preprocessor and without the backbone's
    init_cfg: the tests have no trained checkpoint to load."""
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmseg':
        from mmseg.registry import MODELS
    elif cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.pop('init_cfg', None)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small init ops (see test_detection_segmentation_configs)
    try:
        return MODELS.build(model_cfg)
    finally:
        torch.set_num_threads(threads)
