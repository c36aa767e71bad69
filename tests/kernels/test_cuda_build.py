"""The CUDA backend without a GPU: the sources compile with the installed nvcc, and the custom ops
wrapping them trace (fake implementations, autograd registration) without building anything; the
Triton 2D scan kernels compile to H100 machine code."""
import importlib.util
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


@pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='Triton is not installed')
@pytest.mark.parametrize('height, width', [(56, 56), (56, 200)], ids=['one-tile', 'tiled'])
def test_triton_2d_scan_kernels_compile_to_h100_machine_code(height, width, tmp_path):
    # The interpreter runs the kernels' Python; this compiles them as a GPU would (Triton to PTX,
    # then ptxas to sm_90a), at VMamba-T stage-1 settings (N = 1, 96 channels per route) in both
    # layouts of the column states (in registers, or in a scratch row when the row is tiled).
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vmamba_kernels.selective_scan_2d import triton as kernels
    from vmamba_kernels.triton_common import BACKWARD_TILE, block_channels

    state_pad, tile, tiles, _, _ = kernels.grid_layout(1, height, width)
    ptxas = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'ptxas')
    for kernel, budget in ((kernels._selective_scan_2d_fwd, kernels.FORWARD_TILE_2D),
                           (kernels._selective_scan_2d_bwd, BACKWARD_TILE)):
        constants = dict(HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, NP=state_pad, TILE=tile,
                         BLOCK_D=block_channels(96, state_pad, tile, budget),
                         ONE_TILE=tiles == 1)
        signature = {name: 'constexpr' if name in constants else
                     '*fp32' if name.endswith('_ptr') else 'i32' for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants),
                                  target=GPUTarget('cuda', 90, 32))
        ptx = tmp_path / f'{kernel.__name__}.ptx'
        ptx.write_text(compiled.asm['ptx'])
        assembled = subprocess.run([ptxas, '--gpu-name=sm_90a', str(ptx), '-o', os.devnull],
                                   capture_output=True, text=True)
        assert assembled.returncode == 0, assembled.stderr[-2000:]
