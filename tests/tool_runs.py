"""Running the repository's scripts on generated data, as the tool, demo and checkpoint tests do."""
import importlib.util
import os
import socket
import subprocess
import sys

from tests.paths import DEMO_DATA_GENERATOR, ROOT

SPLITS = ('train', 'val', 'test')


def run_python(*args, timeout=900, env=None):
    """``python ARGS`` with this interpreter in the repository root, output captured as text.

    The timeout only bounds a hang; a busy 2-core machine runs the tools several times slower."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def load_script(path, module_name):
    """The repository script at ``path`` (relative to the root) imported as a module, so a test
    can call its ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_demo_data(task, root, *options):
    """tools/misc/generate_demo_data.py TASK ROOT OPTIONS; a failure fails the test with its
    stderr. Returns ``root``."""
    result = run_python(DEMO_DATA_GENERATOR, task, root, *options)
    assert result.returncode == 0, result.stderr
    return root


def data_root_options(root, no_workers=False):
    """--cfg-options values that point a config's train, val and test dataloaders at ``root``.

    With ``no_workers`` each loads in the main process: quicker for a handful of images, and no
    worker is left behind by a run that is killed."""
    options = []
    for split in SPLITS:
        options.append(f'{split}_dataloader.dataset.data_root={root}')
        if no_workers:
            options += [f'{split}_dataloader.num_workers=0',
                        f'{split}_dataloader.persistent_workers=False']
    return options


def free_port():
    """A TCP port free now on 127.0.0.1, for a distributed run's rendezvous: a fixed port would
    clash when test files run side by side (pytest-xdist)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]
