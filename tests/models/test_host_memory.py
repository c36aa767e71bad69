"""``retain_freed_memory``: after it, a process that frees and re-allocates tensors of several MB
reuses mapped pages instead of page-faulting them in again (counted by the kernel's minor-fault
counter in a child process, so this test's own allocator is left alone)."""
import platform
import subprocess
import sys

import pytest

import vmamba_mm

# Frees an 8 MiB tensor, then two of 12 MiB, then one of 40 MiB: under glibc's defaults the first
# raises the mmap threshold to 8 MiB and the trim threshold to 16 MiB, so the 24 MiB freed at the
# heap's top is trimmed each time, and 40 MiB is above any mmap threshold glibc takes (32 MiB):
# each round faults all of it in again.
CHILD = '''
import resource, sys, torch
from vmamba_mm.models import retain_freed_memory
if sys.argv[1] == 'retain':
    print(retain_freed_memory(), file=sys.stderr)
    print(retain_freed_memory(), file=sys.stderr)

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def round_of_tensors():
    first = torch.ones(2 << 20)
    del first
    second, third = torch.ones(3 << 20), torch.ones(3 << 20)
    del second, third
    fourth = torch.ones(10 << 20)
    del fourth

round_of_tensors()
round_of_tensors()
before = faults()
for _ in range(10):
    round_of_tensors()
print((faults() - before) / 10)
'''

PAGES_PER_ROUND = (8 + 12 + 12 + 40) * 2**20 // 4096


def faults_per_round(mode):
    child = subprocess.run([sys.executable, '-c', CHILD, mode], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr
    return float(child.stdout.strip()), child.stderr


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='the thresholds are glibc\'s')
def test_retained_memory_is_reused_without_page_faults():
    default, _ = faults_per_round('default')
    retained, log = faults_per_round('retain')
    # Under the defaults most of the round's pages fault in each round; kept, few do.
    assert default > PAGES_PER_ROUND / 2, default
    assert retained < default / 4, (retained, default)
    first, second = log.strip().splitlines()[-2:]
    assert first.startswith('freed host memory kept: glibc malloc serves every block from the heap')
    assert second == 'freed host memory kept (set earlier in this process)'


def test_it_is_exported_with_the_model_core():
    assert vmamba_mm.models.retain_freed_memory.__module__ == 'vmamba_mm.models.host_memory'
