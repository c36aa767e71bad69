"""Keeping freed host memory in the process, so large CPU tensors do not page-fault every step.

torch's CPU tensors come from the C library's ``malloc``. glibc's returns a large freed block to
the kernel: a block above the mmap threshold (which adapts up to the largest freed block, at most
32 MiB) is mapped on its own and unmapped when freed, and free space at the top of the heap
beyond the trim threshold (twice the mmap threshold) is trimmed. The next tensor of that size
then takes a page fault on each of its 4 KiB pages when first written. At 224^2 this hits the
V2M and SSD mixers, whose first stage holds a few tensors of several MB at a time: about 7,000
page faults per image for v2m-tiny and ssd-tiny, next to none for VMamba-T and ConvNeXt-T. At
896^2 it hits every model: about 220,000 per image for VMamba-T and 305,000 for ConvNeXt-T
(docs/speed.md).

``retain_freed_memory()`` serves every block from the heap (no block mapped on its own) and lets
the heap keep up to 1 GiB of free space at its top, so freed blocks stay mapped and the next
tensor reuses their pages: the process keeps its peak heap instead of returning it, as allocators
built for speed do (jemalloc, tcmalloc, CUDA's caching allocator). The tools call it unless given
``--release-freed-memory``; in your own code, call it once before the model runs.
"""
import ctypes
import ctypes.util
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30

_applied = {'done': False}


def _glibc():
    """The process's C library when it is glibc, else the reason it is not usable here."""
    if platform.system() != 'Linux':
        return None, f'{platform.system()} does not use glibc'
    name = platform.libc_ver()[0]
    if name != 'glibc':
        return None, f'the C library is {name or "not glibc"} (not glibc)'
    return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6'), None


def retain_freed_memory():
    """Keep freed host memory in the process (module docstring) for the rest of its life.

    Returns a one-line description of what was set, for the caller to log, or of why nothing was
    (a C library other than glibc). Calling it again does nothing more.
    """
    if _applied['done']:
        return 'freed host memory kept (set earlier in this process)'
    libc, reason = _glibc()
    if libc is None:
        return f'freed host memory not kept: {reason}; malloc left as it is'
    # Blocks the heap cannot hold (its growth blocked, or a thread's arena full) are still mapped:
    # glibc falls back to mmap there whatever M_MMAP_MAX says.
    for parameter, value, name in ((_M_MMAP_MAX, 0, 'M_MMAP_MAX'),
                                   (_M_TRIM_THRESHOLD, TRIM_THRESHOLD, 'M_TRIM_THRESHOLD')):
        if libc.mallopt(parameter, value) != 1:
            raise RuntimeError(f'glibc mallopt({name}, {value}) refused the value; run with '
                               '--release-freed-memory (or do not call retain_freed_memory).')
    _applied['done'] = True
    return (f'freed host memory kept: glibc malloc serves every block from the heap and trims '
            f'it only beyond {TRIM_THRESHOLD >> 30} GiB free, so large tensors reuse mapped pages '
            '(--release-freed-memory: glibc defaults)')


def add_release_flag(parser):
    """The tools' ``--release-freed-memory`` flag (benchmark.py, tools/train.py, tools/test.py)."""
    parser.add_argument('--release-freed-memory', action='store_true',
                        help="leave glibc's malloc as it is: large freed host blocks go back to "
                        'the OS and are page-faulted in again (by default the run keeps them: '
                        'vmamba_mm.models.retain_freed_memory)')


def keep_unless_released(release):
    """``retain_freed_memory()`` unless the tool was given ``--release-freed-memory``; the line
    to log either way."""
    if release:
        return 'freed host memory: glibc defaults (--release-freed-memory)'
    return retain_freed_memory()
