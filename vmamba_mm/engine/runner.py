"""What tools/train.py and tools/test.py share: turning command-line flags into a checked config.

One pair of tools serves classification, detection and segmentation: the config's
``default_scope`` (mmpretrain, mmdet or mmseg) picks the registries, and everything here is
task-independent.
"""
import os.path as osp

import torch
from mmengine.config import ConfigDict
from mmengine.model import MMDistributedDataParallel


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


def _top_level_keys_read():
    """Top-level config keys something reads: the Runner's arguments and the tools' own."""
    import inspect

    from mmengine.runner import Runner
    return set(inspect.signature(Runner.__init__).parameters) | {
        'runner_type', 'tta_model', 'tta_pipeline', 'custom_imports', 'log_processor',
        'visualizer', 'default_scope', 'auto_scale_lr', 'resume', 'load_from', 'launcher'}


def _check_top_level_keys(cfg, options):
    """Reject new top-level --cfg-options keys that nothing reads: the Runner ignores them silently.

    Keys below the top level are checked by config_checks (parents must exist, leaves must be
    read by their component).
    """
    for key in options:
        if '.' not in key and key not in cfg and key not in _top_level_keys_read():
            raise ConfigError(f'--cfg-options {key}: the config has no top-level {key!r} and '
                              f'nothing reads it; check the spelling (top-level keys: '
                              f'{sorted(cfg.keys())}).')


def load_config(path, cfg_options=None, work_dir=None, launcher='none'):
    if not osp.isfile(path):
        raise ConfigError(f'Config file not found: {path}')
    from .config_checks import check_config_keys, check_option_types, read_config
    cfg = read_config(path)
    if cfg_options:
        _check_top_level_keys(cfg, cfg_options)
        check_option_types(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    check_config_keys(cfg)
    cfg.launcher = launcher
    if work_dir:  # slurm_train.sh passes an empty --work-dir= when none is given
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
    """Start the gloo process group for torchrun or srun workers on a machine without GPUs.

    mmengine's own start-up calls torch.cuda.set_device unconditionally; with the group already
    up, the Runner skips it and runs the same distributed code path as with NCCL on GPUs.
    """
    import torch.distributed as dist

    from .dist import init_gloo_from_slurm
    if torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher == 'pytorch':
        dist.init_process_group(backend='gloo')
    elif launcher == 'slurm':
        init_gloo_from_slurm()


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


SYNC_BATCHNORM_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm', 'TorchSyncBN')


def replace_sync_batchnorm(cfg, launcher):
    """Turn SyncBN into BN where it cannot synchronise; return the config keys changed.

    Released segmentation configs use SyncBN in their heads. It synchronises only across a process
    group of CUDA tensors: a single-process run has no group, and on a CPU torch refuses to sync
    (a gloo group included). There, plain BN is what SyncBN would compute per process anyway.
    """
    if launcher != 'none' and torch.cuda.is_available():
        return []
    changed = []

    def walk(node, key):
        if isinstance(node, dict):
            if node.get('type') in SYNC_BATCHNORM_TYPES:
                node['type'] = 'BN'
                changed.append(key)
            for name, value in node.items():
                walk(value, f'{key}.{name}')
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f'{key}.{index}')

    walk(cfg.get('model'), 'model')
    return changed


def describe_sync_batchnorm_change(changed, launcher):
    why = ('a single-process run has no process group' if launcher == 'none'
           else 'SyncBN needs CUDA tensors and this machine has no GPU')
    return f'SyncBN -> BN in {", ".join(changed)}: {why}.'


def build_runner(cfg, launcher):
    """The Runner of cfg, with what CPU and single-process runs need done first.

    Returns the runner and the notes for its log (what was changed in the config, and why).
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .hooks import use_run_safety_hooks
    replaced = replace_sync_batchnorm(cfg, launcher)
    init_cpu_distributed(launcher)
    notes = use_run_safety_hooks(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    notes += [describe_sync_batchnorm_change(replaced, launcher)] if replaced else []
    return runner, notes


def run_reporting_data_errors(runner, action, notes=()):
    """runner.train() or runner.test(), with a bad file met mid-run said in one line.

    A file that fails during the run (an image that does not decode, a label map out of range)
    would otherwise surface as a DataLoader worker's traceback; the checkpoints written so far
    stay, so the run can resume once the file is fixed. Anything else propagates untouched.
    """
    import sys

    from .data_checks import describe_data_error
    for note in notes:
        runner.logger.warning(note)
    try:
        getattr(runner, action)()
    except Exception as exc:
        message = describe_data_error(exc)
        if message is None:
            raise
        print(f'error: {message}', file=sys.stderr)
        return 2
    finally:
        close_process_group()
    return 0


def close_process_group():
    """Destroy the default process group, if one was set up, before the interpreter exits.

    Left to interpreter teardown, gloo's worker threads can still hold tensors whose release needs
    the GIL, and a rank then dies with 'terminate called without an active exception' after a
    successful run (pytorch/pytorch#190489). The group is local state: destroying it waits on no
    other rank.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
