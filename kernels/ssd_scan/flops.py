"""SSD's cost in the chunked form, as multiply-adds (the official tables' unit).

Per (batch, head) with L' = L padded to whole chunks of Q steps, c = L' / Q chunks, headdim P,
state N, and heads per group r:

- C B^T per chunk and group: Q^2 N per chunk, shared by the group's r heads (N L' Q / r per head);
- the masked scores times dt' x: Q^2 P per chunk, L' Q P;
- each chunk's end state (dt' x)^T B: Q P N per chunk, L' P N;
- state passing: (c + 1)^2 P N (the chunk-level decay matrix times the stacked states);
- the inter-chunk output S_in C: L' P N.
The D skip adds L P when D is given. Element-wise work (exp, masks, the segment sums) counts 0,
as for every other operator here.

The ``torch`` backend is these matrix products in plain ops, which torch's counter counts as
they run (the D skip aside); the Triton kernel is one operator, with this rule registered on it.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from . import cpp, triton  # noqa: F401  (define the operators)


def ssd_scan_macs(batch, length, heads, headdim, state, groups=1, chunk_size=64, with_skip=True):
    """Multiply-adds of one SSD scan in the chunked form (see the module docstring)."""
    padded = -(-length // chunk_size) * chunk_size
    chunks = padded // chunk_size
    per_head = (padded * chunk_size * headdim + 2 * padded * headdim * state
                + (chunks + 1) ** 2 * headdim * state)
    scores = groups * padded * chunk_size * state
    skip = heads * length * headdim if with_skip else 0
    return batch * (heads * per_head + scores + skip)


def _flops_from_shapes(x, B, chunk_size, with_skip):
    """torch's counter counts two FLOPs per multiply-add."""
    batch, length, heads, headdim = x
    _, _, groups, state = B
    return 2 * ssd_scan_macs(batch, length, heads, headdim, state, groups, chunk_size,
                             with_skip=with_skip)


@register_flop_formula(torch.ops.vmamba.ssd_scan_triton)
def _ssd_scan_flops(x, dt, A, B, C, D, dt_bias, initial_states, chunk_size, dt_softplus,
                    out_shape=None, **kwargs):
    return _flops_from_shapes(x, B, chunk_size, with_skip=D is not None)


@register_flop_formula(torch.ops.vmamba.ssd_scan_cpp)
def _ssd_scan_cpp_flops(x, dt, A, B, C, D, dt_bias, initial_states, chunk_size, dt_softplus,
                        out_shape=None, **kwargs):
    # The chunked form's count, as the official tables count SSD, though this kernel runs the
    # recurrence; without the D skip, as torch's counter sees the ``torch`` form (its skip is
    # element-wise): the CPU and meta counts (``vmamba_mm.analysis.flops``) stay that form's.
    return _flops_from_shapes(x, B, chunk_size, with_skip=False)
