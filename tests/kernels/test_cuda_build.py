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

from vmamba_kernels.common import cuda_extension
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
    from vmamba_kernels.common.triton_common import BACKWARD_TILE, block_channels

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


def _compile_for_h100(kernel, constants, pointer_types, scalar_types, tmp_path, num_warps=4):
    """Triton -> PTX -> sm_90a machine code of ``kernel`` (ptxas must accept it); ptxas's
    register report."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {name: 'constexpr' if name in constants else
                 pointer_types.get(name, '*fp32') if name.endswith('_ptr') else
                 scalar_types.get(name, 'i32') for name in kernel.arg_names}
    compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants),
                              target=GPUTarget('cuda', 90, 32),
                              options=dict(num_warps=num_warps))
    ptx = tmp_path / f'{kernel.__name__}.ptx'
    ptx.write_text(compiled.asm['ptx'])
    ptxas = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'ptxas')
    assembled = subprocess.run([ptxas, '--gpu-name=sm_90a', '-v', str(ptx), '-o', os.devnull],
                               capture_output=True, text=True)
    assert assembled.returncode == 0, assembled.stderr[-2000:]
    return assembled.stderr


@pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='Triton is not installed')
@pytest.mark.parametrize('activation', ['fp32', 'bf16'])
def test_triton_scan_core_and_add_norm_compile_to_h100_machine_code(activation, tmp_path):
    # The pixel-major scan core at VMamba-T's settings (N = 1, rank 6) at the four stages' widths,
    # without register spills (its tiling was chosen for that; a 16-byte stack slot at most),
    # and the fused add + LayerNorm at 96 and 768 channels, with float32 or bfloat16 maps.
    from vmamba_kernels.add_layer_norm import triton as add_norm
    from vmamba_kernels.cross_selective_scan import triton as core

    activations = {name: f'*{activation}' for name in ('x_ptr', 'proj_ptr')}
    activations['pixels_ptr'] = '*i64'
    for channels in (96, 192, 384, 768):
        state_pad, block_d, chunk = core.tiling(channels, 1)
        for kernel in (core._cross_selective_scan_fwd, core._cross_selective_scan_bwd):
            constants = dict(ROUTES=4, HAS_D=True, HAS_BIAS=True, NP=state_pad, CHUNK=chunk,
                             BLOCK_D=block_d)
            if 'RP' in kernel.arg_names:
                constants['RP'] = 8
            report = _compile_for_h100(kernel, constants, activations, {}, tmp_path,
                                       num_warps=core.NUM_WARPS)
            spilled = int(re.search(r'(\d+) bytes spill stores', report).group(1))
            assert spilled <= 16, report  # (2048-element tiles on 4 warps spilled 720-808)
    for channels in (96, 768):
        padded, block_r = add_norm.tiling(channels)
        maps = {name: f'*{activation}' for name in ('x_ptr', 'res_ptr', 'sum_ptr', 'out_ptr',
                                                      'dsum_ptr', 'dout_ptr')}
        for kernel in (add_norm._add_layer_norm_fwd, add_norm._add_layer_norm_bwd):
            _compile_for_h100(kernel, dict(BLOCK_R=block_r, BLOCK_C=padded), maps,
                              dict(eps='fp32'), tmp_path, num_warps=add_norm.NUM_WARPS)


@pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='Triton is not installed')
def test_triton_ssd_kernels_compile_to_h100_machine_code(tmp_path):
    # The interpreter runs the kernels' Python; this compiles the forward (also as the backward's
    # state saver) and the backward as a GPU would, with bfloat16 x, B and C, at ssd-tiny's
    # settings (headdim 16, N 64) with the kernel's largest chunk: the forward without register
    # spills, the backward with under 1 KB (64-step chunks spilled 16.5 KB).
    from vmamba_kernels.ssd_scan import triton as ssd

    halves = {name: '*bf16' for name in ('x_ptr', 'B_ptr', 'C_ptr')}
    tiles = dict(HAS_D=True, D_PER_CHANNEL=False, CHUNK=ssd.kernel_chunk(64), BLOCK_P=16,
                 BLOCK_N=64)
    assert tiles['CHUNK'] == ssd.MAX_KERNEL_CHUNK
    for kernel, constants, most_spilled in (
            (ssd._ssd_scan_fwd, dict(tiles, HAS_INIT=True, SAVE_STATES=False), 0),
            (ssd._ssd_scan_fwd, dict(tiles, HAS_INIT=True, SAVE_STATES=True), 0),
            (ssd._ssd_scan_bwd, tiles, 1024)):
        report = _compile_for_h100(kernel, constants, halves, {}, tmp_path,
                                   num_warps=ssd.NUM_WARPS)
        spilled = int(re.search(r'(\d+) bytes spill stores', report).group(1))
        assert spilled <= most_spilled, report
