"""The optional CUDA C++ selective scan (csrc/selective_scan_cuda.cu).

Built on first use with torch.utils.cpp_extension (C++20, as torch >= 2.13 requires) for the
architectures in TORCH_CUDA_ARCH_LIST (default: 8.0 and 9.0, i.e. A100 and H100), and cached by
torch in ``$TORCH_EXTENSIONS_DIR``. Nothing is built at ``pip install`` time, so installing never
fails for want of nvcc; without a GPU or nvcc the ``cuda`` backend reports why and the dispatch
takes Triton, saying so. The operation wrapping it lives in ``selective_scan/cuda.py``.
"""
import os
import shutil

import torch

from .lazy_extension import LazyExtension

DEFAULT_ARCH_LIST = '8.0;9.0'
NVCC_FLAGS = ['-O3', '-std=c++20', '--expt-relaxed-constexpr']


def _why_not_build():
    if not torch.cuda.is_available():
        return 'no CUDA device'
    from torch.utils import cpp_extension
    if shutil.which('nvcc') is None and not cpp_extension.CUDA_HOME:
        return 'nvcc not found (install the CUDA toolkit or set CUDA_HOME)'
    os.environ.setdefault('TORCH_CUDA_ARCH_LIST', DEFAULT_ARCH_LIST)
    return None


_EXTENSION = LazyExtension('vmamba_cuda_scan', 'selective_scan_cuda.cu', precheck=_why_not_build,
                           extra_cflags=['-O3', '-std=c++20'], extra_cuda_cflags=NVCC_FLAGS)
SOURCE = _EXTENSION.source
load_extension = _EXTENSION.load
unavailable_reason = _EXTENSION.unavailable_reason
