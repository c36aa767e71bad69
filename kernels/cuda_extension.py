"""The optional CUDA C++ selective scan (csrc/selective_scan_cuda.cu).

Built on first use with torch.utils.cpp_extension (C++20, as torch >= 2.13 requires) for the
architectures in TORCH_CUDA_ARCH_LIST (default: 8.0 and 9.0, i.e. A100 and H100), and cached by
torch in ``$TORCH_EXTENSIONS_DIR``. Nothing is built at ``pip install`` time, so installing never
fails for want of nvcc; without a GPU or nvcc the ``cuda`` backend reports why and the dispatch
takes Triton, saying so.
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


class _CudaSelectiveScan(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
        dtype = u.dtype
        u, delta, B, C = (t.to(dtype).contiguous() for t in (u, delta, B, C))
        A = A.float().contiguous()
        D = D.float().contiguous() if D is not None else None
        delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
        y, checkpoints = load_extension().forward(u, delta, A, B, C, D, delta_bias,
                                                  bool(delta_softplus))
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, checkpoints)
        ctx.delta_softplus = bool(delta_softplus)
        ctx.has = (D is not None, delta_bias is not None)
        return y.to(out_dtype)

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, delta_bias, checkpoints = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = load_extension().backward(
            u, delta, A, B, C, D, delta_bias, dy.float().contiguous(), checkpoints,
            ctx.delta_softplus)
        has_d, has_bias = ctx.has
        return (du.to(u.dtype), ddelta.to(delta.dtype), dA, dB.to(B.dtype), dC.to(C.dtype),
                dD if has_d else None, dbias if has_bias else None, None, None)


def selective_scan_cuda(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                        out_dtype=torch.float32):
    return _CudaSelectiveScan.apply(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype)
