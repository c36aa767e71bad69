"""The selective-scan entry point: input checks, float32 prologue, dispatch.

Contract (mamba_ssm ``selective_scan_ref`` semantics)::

    u, delta      (batch, dim, L)
    A             (dim, N)            float32
    B, C          (batch, G, N, L)    channel d reads group d // (dim // G); (batch, N, L) is G = 1
    D, delta_bias (dim,)              float32
    delta <- softplus(delta + delta_bias)      (when delta_softplus)
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t

Everything is computed in float32; the result has ``out_dtype`` (default: the dtype of ``u``).
"""
import os

from .. import cpu_extension, cuda_extension, triton_common
from ..dispatch import register, run
from . import cpp, chunked, cuda, reference, triton
from . import flops  # noqa: F401  (the FLOP counter's rule for the scan operators)

OPERATION = 'selective_scan'
register(OPERATION, 'reference', reference.selective_scan_reference, devices=('cpu', 'cuda'),
         description='sequential loop over tokens')
# On a GPU the vectorised PyTorch path is 20-100x slower than a kernel: by name only there.
register(OPERATION, 'torch', chunked.selective_scan_chunked, devices=('cpu', 'cuda'), priority=0,
         auto_devices=('cpu', ), description='tensor ops')
register(OPERATION, 'cpp', cpp.selective_scan_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpu_extension.unavailable_reason, description='C++ kernel')
# Under TRITON_INTERPRET=1 Triton runs on CPU tensors (slowly): that is how the CPU tests reach it.
register(OPERATION, 'triton', triton.selective_scan_triton,
         devices=('cuda', 'cpu') if os.environ.get('TRITON_INTERPRET') == '1' else ('cuda', ),
         priority=2, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel')
# Below Triton: on an H100 (VMamba-T stage 1, batch 128, bf16) its forward takes 4.1 ms against
# Triton's 1.3, forward+backward 14.7 against 6.7. It is the kernel for machines without Triton.
register(OPERATION, 'cuda', cuda.selective_scan_cuda, devices=('cuda', ), priority=1,
         auto_devices=('cuda', ), unavailable_reason=cuda_extension.unavailable_reason,
         description='CUDA C++ kernel')


def _shape_error(operation, name, tensor, expected):
    return ValueError(f'{operation}: {name} has shape {tuple(tensor.shape)}, expected '
                      f'{expected}.')


def check_inputs(u, delta, A, B, C, D, delta_bias, operation=OPERATION):
    """Validate shapes against the contract and return (B, C) as (batch, G, N, L).

    ``operation`` names the caller in the errors (the 2D scan shares this contract).
    """
    if u.dim() != 3:
        raise _shape_error(operation, 'u', u, '(batch, dim, L)')
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise _shape_error(operation, 'delta', delta, f'{tuple(u.shape)} like u')
    if A.dim() != 2 or A.shape[0] != dim:
        raise _shape_error(operation, 'A', A, f'({dim}, N)')
    state = A.shape[1]
    grouped = []
    for name, t in (('B', B), ('C', C)):
        if t.dim() == 3:
            t = t.unsqueeze(1)
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != state or t.shape[3] != length:
            raise _shape_error(operation, name, t,
                               f'({batch}, G, {state}, {length}) or ({batch}, {state}, {length})')
        if dim % t.shape[1]:
            raise ValueError(f'{operation}: dim={dim} is not divisible by the {t.shape[1]} '
                             f'groups of {name}.')
        grouped.append(t)
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise _shape_error(operation, name, t, f'({dim},)')
    for name, t in (('delta', delta), ('A', A), ('B', B), ('C', C), ('D', D),
                    ('delta_bias', delta_bias)):
        if t is not None and t.device != u.device:
            raise ValueError(f'{operation}: {name} is on {t.device} but u is on {u.device}.')
    return grouped


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                   out_dtype=None, backend=None):
    """Run the selective scan; see the module docstring for shapes and semantics.

    ``backend`` names a registered backend ('reference', 'torch', 'cpp', 'triton', 'cuda') or
    None for the automatic choice (see ``vmamba_kernels.dispatch``).
    """
    B, C = check_inputs(u, delta, A, B, C, D, delta_bias)
    return run(OPERATION, u.device.type, backend, u, delta, A, B, C, D=D, delta_bias=delta_bias,
               delta_softplus=delta_softplus, out_dtype=u.dtype if out_dtype is None else out_dtype)
