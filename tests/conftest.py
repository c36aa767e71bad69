import os
import sys

import pytest
import torch

# Tests run on the CPU with both cores; keep results independent of the machine's thread default.
torch.set_num_threads(min(2, os.cpu_count() or 1))

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
