"""The CUDA backend without a GPU: the sources compile with the installed nvcc, and the custom ops
wrapping them trace (fake implementations, autograd registration) without building anything."""
import os
import re
import shutil
import subprocess
import sysconfig

import pytest
import torch

from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from vmamba_kernels import cuda_extension
from vmamba_kernels.selective_scan import cuda as cuda_scan


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
           '-fPIC', '-gencode=arch=compute_80,code=sm_80',
           '-DTORCH_EXTENSION_NAME=vmamba_cuda_scan',
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


def test_checkpoint_interval_matches_the_cuda_source():
    with open(cuda_extension.SOURCE) as source:
        found = re.search(r'constexpr\s+int\s+kCheckpoint\s*=\s*(\d+)\s*;', source.read())
    assert found is not None, f'no `constexpr int kCheckpoint = <n>;` in {cuda_extension.SOURCE}'
    assert int(found.group(1)) == cuda_scan.CHECKPOINT_INTERVAL


@pytest.mark.parametrize('length', [1, 16, 17, 45])
def test_cuda_ops_fake_shapes_on_meta_tensors(length):
    meta = dict(device='meta')
    u = torch.empty(2, 8, length, dtype=torch.bfloat16, **meta)
    A = torch.empty(8, 5, **meta)
    B = torch.empty(2, 2, 5, length, dtype=torch.float16, **meta)
    y, checkpoints = cuda_scan.selective_scan_cuda_forward(u, u, A, B, B, None, None, True)
    assert (y.shape, y.dtype) == ((2, 8, length), torch.float32)
    # The kernel stores the state entering every CHECKPOINT_INTERVAL-th token, at least one.
    expected_checkpoints = max(1, -(-length // cuda_scan.CHECKPOINT_INTERVAL))
    assert checkpoints.shape == (2, 8, 5, expected_checkpoints)
    grads = cuda_scan.selective_scan_cuda_backward(u, u, A, B, B, None, None, checkpoints, y, True)
    assert [(tuple(g.shape), g.dtype) for g in grads] == [
        ((2, 8, length), torch.bfloat16), ((2, 8, length), torch.bfloat16),
        ((8, 5), torch.float32), ((2, 2, 5, length), torch.float16),
        ((2, 2, 5, length), torch.float16), ((8, ), torch.float32), ((8, ), torch.float32)]


def test_cuda_op_autograd_reaches_the_backward_op_under_fake_tensors():
    with FakeTensorMode():
        u, delta = torch.empty(2, 8, 33), torch.empty(2, 8, 33)
        A, D = torch.empty(8, 4), torch.empty(8)
        B, C = torch.empty(2, 2, 4, 33), torch.empty(2, 2, 4, 33, dtype=torch.bfloat16)
        leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D)]
        y = cuda_scan.selective_scan_cuda(*leaves, delta_bias=None, delta_softplus=True)
        y.sum().backward()
        for leaf in leaves:
            assert leaf.grad is not None and leaf.grad.shape == leaf.shape
            assert leaf.grad.dtype == leaf.dtype


def test_cuda_ops_appear_whole_in_a_symbolic_trace():
    def scan(u, delta, A, B, C):
        return cuda_scan.selective_scan_cuda(u, delta, A, B, C, delta_softplus=True)

    inputs = (torch.randn(1, 4, 20), torch.randn(1, 4, 20), -torch.rand(4, 3),
              torch.randn(1, 1, 3, 20), torch.randn(1, 1, 3, 20))
    graph = make_fx(scan, tracing_mode='symbolic')(*inputs).graph
    targets = [str(node.target) for node in graph.nodes if node.op == 'call_function']
    assert 'vmamba.selective_scan_cuda.default' in targets
