"""Distributed runs on machines without GPUs, the same code path as NCCL on GPUs.

- ``init_cpu_distributed``: the gloo process group for torchrun or srun workers. mmengine's own
  start-up calls ``torch.cuda.set_device`` unconditionally (``_init_dist_slurm`` too);
  ``init_gloo_from_slurm`` does the same start-up from the ``SLURM_*`` variables of an ``srun``
  task, with gloo, and leaves the environment as mmengine's would (the Runner reads
  ``LOCAL_RANK`` when it wraps the model).
- ``CPUDistributedDataParallel``: mmengine's DDP wrapper without the ``device_ids`` a CPU refuses.
- ``close_process_group``: the group destroyed before interpreter teardown.
"""
import os
import shutil
import subprocess

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

DEFAULT_MASTER_PORT = '29500'  # torch.distributed's default, as mmengine uses for Slurm


class SlurmEnvironmentError(RuntimeError):
    """A Slurm task whose environment does not say where the process group is."""


def _first_host(nodelist):
    """The first host of a Slurm node list (``node[01-04]`` and the like), expanded by scontrol."""
    if shutil.which('scontrol') is None:
        raise SlurmEnvironmentError(
            f'scontrol is not on PATH, so the node list {nodelist!r} cannot be expanded to find '
            'the master host; put Slurm\'s bin directory on PATH or set MASTER_ADDR.')
    try:
        result = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True,
                                text=True, check=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        raise SlurmEnvironmentError(
            f'scontrol show hostnames {nodelist} failed ({exc.stderr.strip()}); set MASTER_ADDR '
            'to the host of rank 0.') from exc
    hosts = result.stdout.split()
    if not hosts:
        raise SlurmEnvironmentError(f'scontrol show hostnames {nodelist} printed no host; set '
                                    'MASTER_ADDR to the host of rank 0.')
    return hosts[0]


def _slurm_variable(name):
    try:
        return os.environ[name]
    except KeyError as exc:
        raise SlurmEnvironmentError(
            f'--launcher slurm needs {name}, which srun sets for each task; run through '
            'tools/slurm_train.sh or tools/slurm_test.sh (or srun), or use --launcher pytorch '
            'under torchrun.') from exc


def init_gloo_from_slurm():
    """Set MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK from the srun task, start gloo."""
    rank = _slurm_variable('SLURM_PROCID')
    world_size = _slurm_variable('SLURM_NTASKS')
    local_rank = _slurm_variable('SLURM_LOCALID')
    if 'MASTER_ADDR' not in os.environ:
        # The step's own nodes, where rank 0 runs; a job step may use fewer nodes than its job.
        nodelist = os.environ.get('SLURM_STEP_NODELIST') or _slurm_variable('SLURM_NODELIST')
        os.environ['MASTER_ADDR'] = _first_host(nodelist)
    os.environ.setdefault('MASTER_PORT', DEFAULT_MASTER_PORT)
    os.environ.update(RANK=rank, WORLD_SIZE=world_size, LOCAL_RANK=local_rank)
    dist.init_process_group(backend='gloo')


def init_cpu_distributed(launcher):
    """Start the gloo process group for torchrun or srun workers on a machine without GPUs.

    mmengine's own start-up calls torch.cuda.set_device unconditionally; with the group already
    up, the Runner skips it and runs the same distributed code path as with NCCL on GPUs.
    """
    if torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher == 'pytorch':
        dist.init_process_group(backend='gloo')
    elif launcher == 'slurm':
        init_gloo_from_slurm()


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for models on the CPU, where DDP refuses ``device_ids``.

    The Runner always passes ``device_ids=[LOCAL_RANK]`` to DDP wrappers; on a CPU-only machine
    that must become None. Everything else is mmengine's wrapper unchanged.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if not torch.cuda.is_available():
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def close_process_group():
    """Destroy the default process group, if one was set up, before the interpreter exits.

    Left to interpreter teardown, gloo's worker threads can still hold tensors whose release needs
    the GIL, and a rank then dies with 'terminate called without an active exception' after a
    successful run (pytorch/pytorch#190489). The group is local state: destroying it waits on no
    other rank.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
