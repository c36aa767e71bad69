"""The launcher scripts for real: which interpreter dist_*.sh run, and slurm_*.sh on a one-node
Slurm cluster that this module starts (Debian's slurm-wlm), with two CPU tasks and gloo."""
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.paths import DEMO_CLASSIFICATION as DEMO, ROOT
from tests.tool_runs import data_root_options, free_port, generate_demo_data

PROJECT_PYTHON = os.path.join(ROOT, '.venv', 'bin', 'python')
PARTITION = 'cpu'


def run(args, env=None, cwd=ROOT, timeout=600):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope='module')
def torchless_python(tmp_path_factory):
    """A real interpreter without torch, as a system python outside the project's venv is."""
    venv = tmp_path_factory.mktemp('torchless')
    created = run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    assert created.returncode == 0, created.stderr
    return venv / 'bin' / 'python'


@pytest.mark.skipif(not os.access(PROJECT_PYTHON, os.X_OK), reason='no .venv: run make install')
def test_dist_train_runs_the_project_venv_from_any_directory(torchless_python, tmp_path):
    # A torch-less `python` first on PATH: what the launcher ran before it looked for the venv.
    env = dict(os.environ, PATH=f'{torchless_python.parent}{os.pathsep}{os.environ["PATH"]}',
               PORT=str(free_port()))
    env.pop('PYTHON', None)
    launched = run(['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), 'no_such_config.py',
                    '1'], env=env, cwd=tmp_path)
    assert (f"workers run {PROJECT_PYTHON} (the project's .venv; set PYTHON to use another)"
            in launched.stderr)
    # train.py itself ran, under torchrun, and named the missing config.
    assert 'error: Config file not found: no_such_config.py' in launched.stderr
    assert "No module named 'torch'" not in launched.stderr


def test_an_interpreter_without_torch_stops_the_launch_saying_what_to_do(torchless_python):
    env = dict(os.environ, PYTHON=str(torchless_python))
    for script, args in (('dist_train.sh', [DEMO, '2']), ('dist_test.sh', [DEMO, 'x.pth', '2']),
                         ('slurm_train.sh', [PARTITION, 'job', DEMO])):
        launched = run(['bash', f'tools/{script}', *args], env=env)
        assert launched.returncode == 2, (script, launched.stderr)
        first, error = launched.stderr.strip().splitlines()
        assert first.endswith(f'workers run {torchless_python} (from PYTHON)'), first
        assert error.startswith('error: ') and str(torchless_python) in error, error
        assert "cannot import torch (ModuleNotFoundError: No module named 'torch')" in error
        assert "run 'make install'" in error and 'set PYTHON' in error


SLURM_CONF = """\
ClusterName=vmambatest
SlurmctldHost={host}
SlurmUser={user}
SlurmdUser={user}
# No munge: the daemons and clients are this machine's, in this test's folder.
AuthType=auth/none
CredType=cred/none
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
MailProg=/bin/true
# No cgroups or systemd needed: process groups track the tasks.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_until_idle(env, daemons, root, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, daemon in daemons.items():
            if daemon.poll() is not None:
                log = (root / f'{name}.out').read_text()
                pytest.fail(f'{name} exited with {daemon.returncode}:\n{log[-3000:]}')
        state = run(['sinfo', '-h', '-p', PARTITION, '-o', '%T'], env=env, timeout=30)
        if state.stdout.strip() == 'idle':
            return
        time.sleep(0.5)
    logs = '\n'.join((root / f'{name}.out').read_text()[-2000:] for name in daemons)
    pytest.fail(f'the Slurm node was not idle after {timeout} s:\n{logs}')


@pytest.fixture(scope='module')
def slurm_cluster(tmp_path_factory):
    """slurmctld and slurmd for this host, one partition of its CPUs; the environment to use it."""
    missing = [tool for tool in ('slurmctld', 'slurmd', 'srun', 'sinfo', 'scontrol')
               if shutil.which(tool) is None]
    if missing:
        pytest.skip(f'Slurm is not installed ({", ".join(missing)} missing): '
                    'apt-get install -y slurm-wlm (.ci/run does)')
    if os.geteuid() != 0:
        pytest.skip('the one-node Slurm cluster needs root to start slurmd; run the tests as '
                    'root (as .ci/run does)')
    root = tmp_path_factory.mktemp('slurm')
    (root / 'state').mkdir()
    (root / 'spool').mkdir()
    host = socket.gethostname().split('.')[0]
    conf = root / 'slurm.conf'
    conf.write_text(SLURM_CONF.format(
        host=host, user=getpass.getuser(), ctld_port=free_port(), d_port=free_port(),
        root=root, cpus=os.cpu_count(), partition=PARTITION))
    env = dict(os.environ, SLURM_CONF=str(conf))
    daemons = {}
    try:
        for name, args in (('slurmctld', ['slurmctld', '-D', '-f', str(conf)]),
                           ('slurmd', ['slurmd', '-D', '-f', str(conf), '-N', host])):
            with open(root / f'{name}.out', 'w') as out:
                daemons[name] = subprocess.Popen(args, env=env, stdout=out,
                                                 stderr=subprocess.STDOUT)
        _wait_until_idle(env, daemons, root)
        yield env
    finally:
        for daemon in daemons.values():
            daemon.terminate()
        for daemon in daemons.values():
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return generate_demo_data('cls', tmp_path_factory.mktemp('demo_cls'), '--train-per-class', '4',
                              '--val-per-class', '2')


def _tiny_run_options(data_root):
    return [*data_root_options(data_root, no_workers=True), 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']


def test_slurm_train_then_test_with_two_cpu_tasks(slurm_cluster, tiny_data, tmp_path):
    work = tmp_path / 'work'
    # GPUS_PER_NODE unset: the launcher finds that the partition has no GPUs.
    env = dict(slurm_cluster, GPUS='2', CPUS_PER_TASK='1', PORT=str(free_port()),
               PYTHON=sys.executable)
    env.pop('GPUS_PER_NODE', None)
    trained = run(['bash', 'tools/slurm_train.sh', PARTITION, 'vmamba-train', DEMO, str(work),
                   '--cfg-options', *_tiny_run_options(tiny_data)], env=env)
    log = trained.stdout + trained.stderr
    assert trained.returncode == 0, log[-4000:]
    assert f'partition {PARTITION} has no GPU gres: 2 CPU tasks with gloo' in trained.stderr
    srun_line = next(line for line in trained.stderr.splitlines() if line.startswith('+ exec srun'))
    assert '--ntasks=2' in srun_line and '--gres' not in srun_line, srun_line
    assert 'Distributed launcher: slurm' in log and 'GPU number: 2' in log  # two ranks, gloo
    assert (work / 'epoch_1.pth').is_file()

    tested = run(['bash', 'tools/slurm_test.sh', PARTITION, 'vmamba-test', DEMO,
                  str(work / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'test'),
                  '--cfg-options', *_tiny_run_options(tiny_data)], env=env)
    log = tested.stdout + tested.stderr
    assert tested.returncode == 0, log[-4000:]
    assert 'Distributed launcher: slurm' in log and 'GPU number: 2' in log
    assert 'accuracy/top1' in log
