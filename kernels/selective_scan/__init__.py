"""The selective scan: its contract, its input check and its backends in the dispatch.

Contract (mamba_ssm ``selective_scan_ref`` semantics)::

    u, delta      (batch, dim, L)
    A             (dim, N)            float32
    B, C          (batch, G, N, L)    channel d reads group d // (dim // G); (batch, N, L) is G = 1
    D, delta_bias (dim,)              float32
    delta <- softplus(delta + delta_bias)      (when delta_softplus)
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t

Everything is computed in float32; the result has ``out_dtype`` (default: the dtype of ``u``).
Backends (one file each): ``reference`` (one token at a time), ``torch`` (chunked tensor ops),
``cpp`` (C++, CPU), ``triton`` and ``cuda`` (GPUs).
"""
from ..common import cpu_extension, cuda_extension, triton_common
from ..common.scan_common import check_scan_inputs, with_group_dim
from ..dispatch import register, register_input_check, run
from . import cpp, cuda, reference, triton
from . import flops  # noqa: F401  (the FLOP counter's rule for the scan operators)
from . import torch as torch_backend

__all__ = ['selective_scan']

OPERATION = 'selective_scan'
register(OPERATION, 'reference', reference.selective_scan_reference, devices=('cpu', 'cuda'),
         description='sequential loop over tokens')
# On a GPU the vectorised PyTorch path is 20-100x slower than a kernel: by name only there.
register(OPERATION, 'torch', torch_backend.selective_scan_chunked, devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.selective_scan_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpu_extension.unavailable_reason, description='C++ kernel')
register(OPERATION, 'triton', triton.selective_scan_triton, devices=triton_common.triton_devices(),
         priority=2, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel')
# Below Triton: on an H100 (VMamba-T stage 1, batch 128, bf16) its forward takes 4.1 ms against
# Triton's 1.3, forward+backward 14.7 against 6.7. It is the kernel for machines without Triton.
register(OPERATION, 'cuda', cuda.selective_scan_cuda, devices=('cuda', ), priority=1,
         auto_devices=('cuda', ), unavailable_reason=cuda_extension.unavailable_reason,
         description='CUDA C++ kernel')


def check_inputs(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                 out_dtype=None):
    """The contract above, as every backend receives it (B, C as (batch, G, N, L))."""
    check_scan_inputs(OPERATION, u, delta, A, B, C, D, delta_bias)


register_input_check(OPERATION, check_inputs)


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                   out_dtype=None, backend=None):
    """Run the selective scan; see the module docstring for shapes and semantics.

    ``backend`` names a registered backend ('reference', 'torch', 'cpp', 'triton', 'cuda') or
    None for the automatic choice (see ``vmamba_kernels.dispatch``).
    """
    return run(OPERATION, u.device.type, backend, u, delta, A, with_group_dim(B),
               with_group_dim(C), D=D, delta_bias=delta_bias, delta_softplus=delta_softplus,
               out_dtype=u.dtype if out_dtype is None else out_dtype)
