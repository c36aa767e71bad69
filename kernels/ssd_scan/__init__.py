"""Mamba2's SSD scan: its contract, its input check and its backends.

Contract (mamba_ssm's ``mamba_chunk_scan_combined``)::

    x               (batch, L, heads, headdim)
    dt              (batch, L, heads)
    A               (heads,)              float32, one scalar decay per head
    B, C            (batch, L, groups, N) head h reads group h // (heads // groups)
    D               (heads,) or (heads, headdim)
    dt_bias         (heads,)
    initial_states  (batch, heads, headdim, N)
    dt' = softplus(dt + dt_bias) if dt_softplus else dt + dt_bias
    S_t = exp(dt'_t A_h) S_{t-1} + dt'_t x_t B_t^T         (S: headdim x N, S_{-1} = initial)
    y_t = S_t C_t + D x_t

Returns ``y`` (batch, L, heads, headdim) in ``out_dtype`` (default: the dtype of ``x``), or
``(y, final_states)`` with ``final_states`` = S_{L-1} (batch, heads, headdim, N) in float32 when
``return_final_states``. Computed in float32. ``chunk_size`` is the chunked form's chunk length
Q; it changes the work, not the result (the sequential reference ignores it).
"""
from torch import float32

from ..common import triton_common
from ..dispatch import register, register_input_check, run
from . import flops, reference, triton  # noqa: F401  (flops: FLOP rules)
from . import cpp
from . import torch as torch_backend
from .flops import ssd_scan_macs  # noqa: F401  (public)

__all__ = ['ssd_scan']

OPERATION = 'ssd_scan'
register(OPERATION, 'reference', reference.ssd_scan_reference, devices=('cpu', 'cuda'),
         description='a loop over tokens')
register(OPERATION, 'torch', torch_backend.ssd_scan_chunked, devices=('cpu', 'cuda'),
         priority=0, description='tensor ops, chunked (state space duality) form')
# The CPU's automatic choice: at ssd-tiny's shapes the chunked form's decay masks and layout copies
# cost several times the token-by-token recurrence that this kernel runs with the state in L1.
register(OPERATION, 'cpp', cpp.ssd_scan_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpp.unavailable_reason,
         description='C++ kernel, the recurrence token by token')
register(OPERATION, 'triton', triton.ssd_scan_triton, devices=triton_common.triton_devices(),
         priority=2, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernels, forward and backward')


def _shape_error(name, tensor, expected):
    return ValueError(f'{OPERATION}: {name} has shape {tuple(tensor.shape)}, expected {expected}.')


def check_inputs(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
                 initial_states=None, return_final_states=False, out_dtype=None):
    """The contract above, as every backend receives it; each error names the input."""
    if x.dim() != 4:
        raise _shape_error('x', x, '(batch, L, heads, headdim)')
    batch, length, heads, headdim = x.shape
    if tuple(dt.shape) != (batch, length, heads):
        raise _shape_error('dt', dt, f'({batch}, {length}, {heads}) = (batch, L, heads)')
    if tuple(A.shape) != (heads, ):
        raise _shape_error('A', A, f'({heads},): one scalar decay per head')
    if A.dtype != float32:
        raise TypeError(f'{OPERATION}: A has dtype {A.dtype}, expected torch.float32 (pass '
                        f'A.float()).')
    if B.dim() != 4 or tuple(B.shape[:2]) != (batch, length):
        raise _shape_error('B', B, f'({batch}, {length}, groups, N)')
    groups, state = B.shape[2], B.shape[3]
    if tuple(C.shape) != tuple(B.shape):
        raise _shape_error('C', C, f'{tuple(B.shape)} like B')
    if groups < 1 or heads % groups:
        raise ValueError(f'{OPERATION}: heads={heads} is not divisible by the {groups} groups of '
                         f'B and C; use a number of groups that divides the heads.')
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f'{OPERATION}: chunk_size={chunk_size!r} must be a positive int.')
    if D is not None and tuple(D.shape) not in ((heads, ), (heads, headdim)):
        raise _shape_error('D', D, f'({heads},) or ({heads}, {headdim})')
    if dt_bias is not None and tuple(dt_bias.shape) != (heads, ):
        raise _shape_error('dt_bias', dt_bias, f'({heads},)')
    if initial_states is not None and tuple(initial_states.shape) != (batch, heads, headdim,
                                                                      state):
        raise _shape_error('initial_states', initial_states,
                           f'({batch}, {heads}, {headdim}, {state}) = (batch, heads, headdim, N)')
    for name, t in (('dt', dt), ('A', A), ('B', B), ('C', C), ('D', D), ('dt_bias', dt_bias),
                    ('initial_states', initial_states)):
        if t is not None and t.device != x.device:
            raise ValueError(f'{OPERATION}: {name} is on {t.device} but x is on {x.device}.')


register_input_check(OPERATION, check_inputs)


def ssd_scan(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False,
             initial_states=None, return_final_states=False, out_dtype=None, backend=None):
    """Run Mamba2's SSD scan; see the module docstring.

    ``backend`` names a registered backend ('reference', 'torch', 'cpp', 'triton') or None for the
    automatic choice (see ``vmamba_kernels.dispatch``).
    """
    return run(OPERATION, x.device.type, backend, x, dt, A, B, C, chunk_size=chunk_size, D=D,
               dt_bias=dt_bias, dt_softplus=dt_softplus, initial_states=initial_states,
               return_final_states=return_final_states,
               out_dtype=x.dtype if out_dtype is None else out_dtype)
