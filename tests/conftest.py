import os
import sys

import pytest
import torch


# Tests run on the CPU with at most two threads, so results do not depend on the machine's
# default. Under pytest-xdist the cores are shared out among the workers: two workers of two
# OpenMP threads each on two cores would wait on each other's threads at every parallel region.
XDIST_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
THREADS = max(1, min(2, os.cpu_count() or 1) // XDIST_WORKERS)
torch.set_num_threads(THREADS)
if XDIST_WORKERS > 1:  # and so do the tools the tests start (tools/train.py, dist_train.sh, ...)
    os.environ['OMP_NUM_THREADS'] = str(THREADS)

# The repository root first on the path, so that `tests.paths` and `tests.official` import from
# every folder under tests/ (and ahead of the `tests` package model-index installs).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture(scope='session')
def official_keys():
    """{constructor: {'params', 'state_dict': {key: shape}}} of the nine official classifiers.
    Shared by every test of the session: read it, do not change it."""
    from tests.official import load_official_keys  # after the root is on sys.path
    return load_official_keys()


# The longest test files, longest first. `make test` runs the suite on two workers, a file per
# worker at a time (pytest-xdist's loadfile, told to keep this order): started last, one of these
# would leave the other worker idle for minutes at the end, as the detection demo did when xdist
# put the files with the most tests first.
LONGEST_FILES = ('tools/test_demo_detection.py', 'kernels/test_cuda_build.py',
                 'tools/test_tools.py', 'kernels/test_triton_interpret.py',
                 'tools/test_demo_segmentation.py', 'tools/test_umamba2_runs.py',
                 'checkpoints/test_checkpointing.py',
                 'models/test_vssm.py', 'kernels/test_selective_scan.py',
                 'models/test_compile_export.py', 'tools/test_benchmark_scaling.py',
                 'kernels/test_selective_scan_2d_triton.py', 'models/test_torch_only.py')


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FILES) if path.endswith('tests/' + name)),
                    len(LONGEST_FILES))
    items.sort(key=rank)  # stable: the rest keep their order
