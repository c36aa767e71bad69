"""The CUDA sources compile with the installed nvcc (they cannot run on a machine without a GPU)."""
import os
import shutil
import subprocess
import sysconfig

import pytest
import torch

from vmamba_kernels import cuda_extension


def test_cuda_sources_compile_with_nvcc(tmp_path):
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        pytest.skip('nvcc is not installed')
    from torch.utils import cpp_extension
    cuda_home = os.environ.get('CUDA_HOME') or (
        '/usr/local/cuda' if os.path.isdir('/usr/local/cuda/include') else None)
    includes = cpp_extension.include_paths('cuda') + [sysconfig.get_paths()['include']]
    if cuda_home:
        includes.append(os.path.join(cuda_home, 'include'))
    cmd = [nvcc, '-c', cuda_extension.SOURCE, '-o', str(tmp_path / 'scan.o'), '-Xcompiler',
           '-fPIC', '-gencode=arch=compute_80,code=sm_80', '-DTORCH_EXTENSION_NAME=vmamba_cuda_scan',
           '-DTORCH_API_INCLUDE_EXTENSION_H',
           f'-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}']
    cmd += cuda_extension.NVCC_FLAGS + cpp_extension.COMMON_NVCC_FLAGS
    cmd += [f'-I{path}' for path in includes]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / 'scan.o').stat().st_size > 0


def test_cuda_backend_says_why_it_is_unavailable_here():
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    assert cuda_extension.unavailable_reason() == 'no CUDA device'
