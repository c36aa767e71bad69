import os
import sys

import pytest
import torch

# Tests run on the CPU with both cores; keep results independent of the machine's thread default.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture
def repo_root():
    return REPO_ROOT
