"""Building the compiled CPU scan kernels (csrc/selective_scan_cpu.cpp).

Built on first use with torch.utils.cpp_extension (about 30 s on 2 cores, cached by torch in
``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``; ``make install`` builds it
ahead). If the build fails, the ``cpp`` backend reports why, and the automatic choice says so
when it takes the pure-PyTorch ``torch`` backend instead. The operations wrapping these kernels
live in the operation folders (``selective_scan/cpp.py``, ``cross_selective_scan/cpp.py``).
"""
import torch

from .lazy_extension import LazyExtension


def compile_flags():
    # -fopenmp: at::parallel_for is an OpenMP pragma in a header. -ffast-math: glibc declares its
    # vector exp/log1p only under __FAST_MATH__; the kernel has no NaN/inf-dependent logic.
    flags = ['-O3', '-std=c++20', '-fopenmp', '-ffast-math']
    try:
        with open('/proc/cpuinfo') as f:
            cpu_flags = f.read()
    except OSError:  # no /proc (not Linux): build without the AVX2 flags
        cpu_flags = ''
    if ' avx2' in cpu_flags and ' fma' in cpu_flags:
        flags += ['-mavx2', '-mfma']  # lets the compiler vectorise exp/log1p (glibc libmvec)
    return flags


_EXTENSION = LazyExtension('vmamba_cpu_scan', 'selective_scan_cpu.cpp',
                           headers=['vector_math.h'], extra_cflags=compile_flags(),
                           extra_ldflags=['-fopenmp'])
load_extension = _EXTENSION.load
unavailable_reason = _EXTENSION.unavailable_reason


def float32_contiguous(t, like):
    """The kernels read float32 contiguous memory; an absent optional tensor is passed empty."""
    return t.float().contiguous() if t is not None else like.new_empty(0, dtype=torch.float32)
