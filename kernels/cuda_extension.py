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

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'selective_scan_cuda.cu')
DEFAULT_ARCH_LIST = '8.0;9.0'
NVCC_FLAGS = ['-O3', '-std=c++20', '--expt-relaxed-constexpr']
_extension = None
_failure = None


def _cuda_home():
    from torch.utils import cpp_extension
    return cpp_extension.CUDA_HOME if cpp_extension.CUDA_HOME and os.path.exists(
        os.path.join(cpp_extension.CUDA_HOME, 'include', 'cuda_runtime.h')) else None


def load_extension():
    global _extension, _failure
    if _extension is None and _failure is None:
        if not torch.cuda.is_available():
            _failure = 'no CUDA device'
        elif shutil.which('nvcc') is None and _cuda_home() is None:
            _failure = 'nvcc not found (install the CUDA toolkit or set CUDA_HOME)'
        else:
            try:
                from torch.utils import cpp_extension
                os.environ.setdefault('TORCH_CUDA_ARCH_LIST', DEFAULT_ARCH_LIST)
                _extension = cpp_extension.load(name='vmamba_cuda_scan', sources=[SOURCE],
                                                extra_cflags=['-O3', '-std=c++20'],
                                                extra_cuda_cflags=NVCC_FLAGS, verbose=False)
            except Exception as exc:  # a failed build makes the backend unavailable, said why
                _failure = f'could not build {SOURCE}: {type(exc).__name__}: {exc}'.strip()
    if _failure is not None:
        raise RuntimeError(_failure)
    return _extension


def unavailable_reason():
    try:
        load_extension()
    except RuntimeError as exc:
        return str(exc).splitlines()[0][:500]
    return None


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
