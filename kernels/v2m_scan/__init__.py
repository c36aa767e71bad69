"""V2M's 2D state-space scan, one stage at a time: selective scans along the rows or the columns
of a channels-last map, in four corner orientations (``common/lines.py``).

V2M (arXiv 2410.10382) computes its 2D SSM as two cascaded 1D scans per orientation: the row
stage (input-dependent delta and B, C fixed to ones, so the N states of a channel are summed),
a depthwise conv (the caller's), then the column stage (input-dependent delta and C, B fixed to
ones). On the ``cpp`` backend one C++ pass walks every line in place on the channels-last map
(the route kernel of ``cross_selective_scan``, its lines segments that start from a zero state),
forward and backward: no gathers, no per-orientation copies. ``torch``, ``triton`` and ``cuda``
lay the lines out as sequences and run that backend's ``selective_scan``; ``reference`` is a loop
over the tokens of a line.

Contract: ``stage`` 'row' or 'column'; x is (B, H, W, C) for the row stage (every orientation
reads it) and (B, H, W, 4, C) for the column stage (orientation o reads ``x[..., o, :]``);
x_proj_weight (4, R + N, C) projects a pixel's channels, per orientation, to delta's rank-R part
and the input-dependent state vector (B in the row stage, C in the column stage);
dt_projs_weight (4, C, R); A (4 * C, N); D, delta_bias (4 * C,) or None; delta gets its bias and
softplus. Per orientation o, line and channel c (orientation-major rows ``o * C + c`` of A, D and
delta_bias), over the line's tokens t in the orientation's direction:

    h_t = exp(delta_t A) h_{t-1} + delta_t x_t B_t      (h_{-1} = 0; B_t = 1 in the column stage)
    y_t = sum_n C_t,n h_t,n + D x_t                     (C_t = 1 in the row stage)

Returns float32: the row stage (B, H, W, 4, C), each orientation's y in pixel order; the column
stage (B, H, W, C), the four orientations' y summed.
"""
from ..common import cpu_extension, cuda_extension, triton_common
from ..common.lines import NUM_ORIENTATIONS, ORIENTATION_FLIPS, check_stage
from ..dispatch import register, register_input_check, run
from . import cpp, flops, reference  # noqa: F401  (flops: the FLOP counter's rule)
from . import torch as torch_backend

__all__ = ['v2m_scan', 'ORIENTATION_FLIPS']

OPERATION = 'v2m_scan'
register(OPERATION, 'reference', reference.v2m_scan_reference, devices=('cpu', 'cuda'),
         description='sequential loop over the tokens of a line')
register(OPERATION, 'torch', torch_backend.lines_as_sequences('torch'), devices=('cpu', 'cuda'),
         priority=0, auto_devices=('cpu', ),
         description="lines gathered into sequences around selective_scan's 'torch' backend")
register(OPERATION, 'cpp', cpp.v2m_scan_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpu_extension.unavailable_reason,
         description='C++ route kernel pair on the channels-last map, lines walked in place')
register(OPERATION, 'triton', torch_backend.lines_as_sequences('triton'),
         devices=triton_common.triton_devices(), priority=2, auto_devices=('cuda', ),
         unavailable_reason=triton_common.unavailable_reason,
         description="lines gathered into sequences around selective_scan's 'triton' backend")
register(OPERATION, 'cuda', torch_backend.lines_as_sequences('cuda'), devices=('cuda', ),
         priority=1, auto_devices=('cuda', ), unavailable_reason=cuda_extension.unavailable_reason,
         description="lines gathered into sequences around selective_scan's 'cuda' backend")


def _refuse(name, tensor, expected, why):
    raise ValueError(f'v2m_scan: {name} has shape {tuple(tensor.shape)}, expected {expected} '
                     f'({why}).')


def check_inputs(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, stage):
    """The contract above, as every backend receives it."""
    check_stage(stage)
    routes = NUM_ORIENTATIONS
    if stage == 'row' and x.dim() != 4:
        _refuse('x', x, '(B, H, W, C)', 'the row stage reads one channels-last map')
    if stage == 'column' and (x.dim() != 5 or x.shape[3] != routes):
        _refuse('x', x, f'(B, H, W, {routes}, C)', 'the column stage reads one map per '
                'orientation')
    channels = x.shape[-1]
    if x_proj_weight.dim() != 3 or x_proj_weight.shape[0] != routes or \
            x_proj_weight.shape[2] != channels:
        _refuse('x_proj_weight', x_proj_weight, f'({routes}, R + N, {channels})',
                f'x has {channels} channels')
    rank = x_proj_weight.shape[1] - A.shape[-1]
    if dt_projs_weight.shape != (routes, channels, rank):
        _refuse('dt_projs_weight', dt_projs_weight, f'({routes}, {channels}, {rank})',
                f'x_proj_weight gives R + N = {x_proj_weight.shape[1]} and A N = {A.shape[-1]}')
    if A.dim() != 2 or A.shape[0] != routes * channels:
        _refuse('A', A, f'({routes * channels}, N)', 'one row per orientation and channel')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and t.shape != (routes * channels, ):
            _refuse(name, t, f'({routes * channels},)', 'one per orientation and channel')


register_input_check(OPERATION, check_inputs)


def v2m_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, stage, backend=None):
    """One stage of V2M's 2D scan over every line of the map, in four orientations; float32
    (see the module docstring)."""
    return run(OPERATION, x.device.type, backend, x, x_proj_weight, dt_projs_weight, A, D,
               delta_bias, stage)
