"""Starting the gloo process group of a Slurm job on machines without GPUs.

mmengine's ``_init_dist_slurm`` calls ``torch.cuda.set_device``, which fails without a GPU. This
does the same start-up from the ``SLURM_*`` variables of an ``srun`` task, with gloo, and leaves
the environment as mmengine's would (the Runner reads ``LOCAL_RANK`` when it wraps the model).
"""
import os
import shutil
import subprocess

import torch.distributed as dist

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
