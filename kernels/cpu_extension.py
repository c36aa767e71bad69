"""The compiled CPU scan kernels (csrc/selective_scan_cpu.cpp).

Built on first use with torch.utils.cpp_extension (about 30 s on 2 cores, cached by torch in
``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``; ``make install`` builds it
ahead). If the build fails, the ``cpp`` backend reports why and the dispatch logs the reason
when it picks the pure-PyTorch ``torch`` backend instead.
"""
import torch

from .lazy_extension import LazyExtension
from .scan_common import needs_grad
from .scan_torch import selective_scan_chunked


def _compile_flags():
    # -fopenmp: at::parallel_for is an OpenMP pragma in a header. -ffast-math: glibc declares its
    # vector exp/log1p only under __FAST_MATH__; the kernel has no NaN/inf-dependent logic.
    flags = ['-O3', '-std=c++20', '-fopenmp', '-ffast-math']
    try:
        with open('/proc/cpuinfo') as f:
            cpu_flags = f.read()
    except OSError:
        cpu_flags = ''
    if ' avx2' in cpu_flags and ' fma' in cpu_flags:
        flags += ['-mavx2', '-mfma']  # lets the compiler vectorise exp/log1p (glibc libmvec)
    return flags


_EXTENSION = LazyExtension('vmamba_cpu_scan', 'selective_scan_cpu.cpp',
                           extra_cflags=_compile_flags(), extra_ldflags=['-fopenmp'])
load_extension = _EXTENSION.load
unavailable_reason = _EXTENSION.unavailable_reason


class _Recurrence(torch.autograd.Function):

    @staticmethod
    def forward(ctx, a, b):
        h = load_extension().linear_recurrence(a, b, False)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        # grad_b_t = grad_h_t + a_{t+1} grad_b_{t+1}: the same recurrence, run backwards.
        next_a = torch.nn.functional.pad(a[:, 1:], (0, 1))
        grad_b = load_extension().linear_recurrence(next_a, grad_h.contiguous(), True)
        grad_a = grad_b * torch.nn.functional.pad(h[:, :-1], (1, 0))
        return grad_a, grad_b


def linear_recurrence_compiled(log_decay, drive):
    """Same contract as ``scan_torch.linear_recurrence``, on the compiled kernel."""
    shape = drive.shape
    a = torch.exp(log_decay).expand(shape).reshape(-1, shape[-1]).contiguous()
    b = drive.reshape(-1, shape[-1]).contiguous()
    return _Recurrence.apply(a, b).view(shape)


def _float32(t, like):
    return t.float().contiguous() if t is not None else like.new_empty(0, dtype=torch.float32)


def fused_forward(u, delta, A, B, C, D, delta_bias, delta_softplus):
    """The whole selective scan in one C++ pass (no autograd); float32 (batch, dim, L) out."""
    args = [_float32(t, u) for t in (u, delta, A, B, C, D, delta_bias)]
    return load_extension().selective_scan_forward(*args, delta_softplus)


_ORDER_CODES = {'cross': 0, 'unidirectional': 1, 'bidirectional': 2}


def fused_cross_forward(x, dt_low, dt_weight, A, B, C, D, delta_bias, order):
    """SS2D's four routes scanned in place (no autograd); see cross_selective_scan.py."""
    args = [_float32(t, x) for t in (x, dt_low, dt_weight, A, B, C, D, delta_bias)]
    return load_extension().cross_selective_scan_forward(*args, True, _ORDER_CODES[order])


def selective_scan_compiled(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                            out_dtype=torch.float32):
    """The ``cpp`` backend (CPU): one fused C++ pass when no gradient is needed; under autograd,
    the ``torch`` backend's vectorised prologue with the recurrence in C++."""
    if needs_grad(u, delta, A, B, C, D, delta_bias):
        return selective_scan_chunked(u, delta, A, B, C, D=D, delta_bias=delta_bias,
                                      delta_softplus=delta_softplus, out_dtype=out_dtype,
                                      recurrence=linear_recurrence_compiled)
    return fused_forward(u, delta, A, B, C, D, delta_bias, delta_softplus).to(out_dtype)
