"""Running a Triton test file under TRITON_INTERPRET=1 (Triton reads it at import time, so the
plain test run re-runs the file in a child process with the variable set)."""
import os
import subprocess
import sys

import pytest

INTERPRETING = os.environ.get('TRITON_INTERPRET') == '1'


def run_under_the_interpreter(path):
    """pytest on ``path`` in a child with TRITON_INTERPRET=1; fails unless every test ran and
    passed there."""
    pytest.importorskip('triton')
    env = dict(os.environ, TRITON_INTERPRET='1')
    child = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', path],
                           env=env, capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-3000:]
    assert ' passed' in child.stdout and 'skipped' not in child.stdout.splitlines()[-1]
