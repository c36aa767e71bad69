"""The Runner set-up tools/train.py and tools/test.py share: command-line flags turned into a
checked config, the Runner built with what CPU and single-process runs need, and a run whose bad
data is said in one line.

One pair of tools serves classification, detection and segmentation: the config's
``default_scope`` (mmpretrain, mmdet or mmseg) picks the registries, and everything here is
task-independent.
"""
import os.path as osp
import sys

import torch
from mmengine.config import ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..config import (ConfigError, check_config_keys, check_option_types, check_top_level_options,
                      read_config)
from ..config.walk import config_dicts
from ..datasets import describe_data_error
from .dist import close_process_group, init_cpu_distributed
from .hooks import use_run_safety_hooks


def load_config(path, cfg_options=None, work_dir=None, launcher='none'):
    if not osp.isfile(path):
        raise ConfigError(f'Config file not found: {path}')
    cfg = read_config(path)
    if cfg_options:
        check_top_level_options(cfg, cfg_options)
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
    for key, node in config_dicts(cfg.get('model'), 'model'):
        if node.get('type') in SYNC_BATCHNORM_TYPES:
            node['type'] = 'BN'
            changed.append(key)
    return changed


def describe_sync_batchnorm_change(changed, launcher):
    why = ('a single-process run has no process group' if launcher == 'none'
           else 'SyncBN needs CUDA tensors and this machine has no GPU')
    return f'SyncBN -> BN in {", ".join(changed)}: {why}.'


def build_runner(cfg, launcher):
    """The Runner of cfg, with what CPU and single-process runs need done first.

    Returns the runner and the notes for its log (what was changed in the config, and why).
    """
    replaced = replace_sync_batchnorm(cfg, launcher)
    init_cpu_distributed(launcher)
    notes = use_run_safety_hooks(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    notes += [describe_sync_batchnorm_change(replaced, launcher)] if replaced else []
    return runner, notes


def run_reporting_data_errors(runner, action, notes=(), infos=()):
    """runner.train() or runner.test(), with a bad file met mid-run said in one line (``notes``
    are logged as warnings first, ``infos`` as information).

    A file that fails during the run (an image that does not decode, a label map out of range)
    would otherwise surface as a DataLoader worker's traceback; the checkpoints written so far
    stay, so the run can resume once the file is fixed. Anything else propagates untouched.
    """
    for note in notes:
        runner.logger.warning(note)
    for info in infos:
        runner.logger.info(info)
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
