"""What tools/train.py and tools/test.py share: turning command-line flags into a checked config.

One pair of tools serves classification, detection and segmentation: the config's
``default_scope`` (mmpretrain, mmdet or mmseg) picks the registries, and everything here is
task-independent.
"""
import os
import os.path as osp

import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for models on the CPU, where DDP refuses ``device_ids``.

    The Runner always passes ``device_ids=[LOCAL_RANK]`` to DDP wrappers; on a CPU-only machine
    that must become None. Everything else is mmengine's wrapper unchanged.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if not torch.cuda.is_available():
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


class ConfigError(ValueError):
    """A config or flag problem, said in words a user can act on."""


def _check_keys_exist(cfg, options):
    """Reject --cfg-options keys whose parents do not exist: a typo there would add a dead branch
    that nothing reads. (A new leaf is allowed: it may be a constructor argument left at its
    default, e.g. model.backbone.with_cp; a wrong one fails when the component is built.)"""
    for key in options:
        parts = key.split('.')
        node = cfg.to_dict()
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict) or part not in node:
                where = '.'.join(parts[:depth]) or 'the top level'
                raise ConfigError(f'--cfg-options {key}: there is no {part!r} under {where} of '
                                  f'the config; check the spelling (keys there: '
                                  f'{sorted(node) if isinstance(node, dict) else "-"}).')
            node = node[part]


def load_config(path, cfg_options=None, work_dir=None, launcher='none'):
    if not osp.isfile(path):
        raise ConfigError(f'Config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        _check_keys_exist(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    if not torch.cuda.is_available():
        # The same code path as NCCL on GPUs, with the backend a CPU has.
        cfg.setdefault('env_cfg', ConfigDict())
        cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
        cfg.env_cfg.dist_cfg.backend = 'gloo'
        if cfg.get('model_wrapper_cfg') is None:
            cfg.model_wrapper_cfg = ConfigDict(type='CPUDistributedDataParallel',
                                               broadcast_buffers=False)
    return cfg


def init_cpu_distributed(launcher):
    """Start the gloo process group for torchrun workers on a machine without GPUs.

    mmengine's own start-up calls torch.cuda.set_device unconditionally; with the group already
    up, the Runner skips it and runs the same distributed code path as with NCCL on GPUs.
    """
    import torch.distributed as dist
    if launcher == 'pytorch' and not torch.cuda.is_available() and not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def require_gpu_for_amp(cfg, asked_by_flag):
    """mmengine's AmpOptimWrapper asserts a GPU; say so before it does."""
    wrapper = cfg.get('optim_wrapper', {})
    if wrapper.get('type') != 'AmpOptimWrapper' or torch.cuda.is_available():
        return
    if asked_by_flag:
        raise ConfigError('--amp needs a CUDA GPU (mixed precision here is mmengine\'s '
                          'AmpOptimWrapper, which runs on CUDA only); drop --amp on this machine.')
    raise ConfigError('This config trains with AmpOptimWrapper (mixed precision), which needs a '
                      'CUDA GPU. On a CPU add --cfg-options optim_wrapper.type=OptimWrapper.')


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def check_folder_datasets(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader')):
    """Check folder-layout classification data (CustomDataset without ann_file) before a run.

    A missing folder, a class folder with no images, or a head whose num_classes differs from the
    number of class folders is named here, before hours of training on the wrong thing.
    """
    head = cfg.get('model', {}).get('head') or {}
    num_classes = head.get('num_classes') if isinstance(head, dict) else None
    for split in splits:
        dataset = (cfg.get(split) or {}).get('dataset') or {}
        if dataset.get('type') not in ('CustomDataset', 'mmpretrain.CustomDataset') or \
                dataset.get('ann_file'):
            continue
        prefix = dataset.get('data_prefix', '')
        if isinstance(prefix, dict):
            prefix = prefix.get('img_path', '')
        folder = osp.join(dataset.get('data_root', '') or '', prefix)
        if not osp.isdir(folder):
            raise ConfigError(f'{split}.dataset: image folder not found: {folder} (data_root '
                              f'{dataset.get("data_root")!r}, data_prefix {prefix!r}).')
        classes = sorted(d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))
        if not classes:
            raise ConfigError(f'{split}.dataset: no class folders in {folder}; the layout is '
                              f'{folder}/<class>/<image>.')
        empty = [osp.join(folder, c) for c in classes
                 if not any(f.lower().endswith(IMAGE_EXTENSIONS)
                            for f in os.listdir(osp.join(folder, c)))]
        if empty:
            raise ConfigError(f'{split}.dataset: class folder(s) with no images: {empty}.')
        if num_classes is not None and num_classes != len(classes):
            raise ConfigError(f'model.head.num_classes is {num_classes} but {folder} has '
                              f'{len(classes)} class folders {classes}; set --cfg-options '
                              f'model.head.num_classes={len(classes)}.')
