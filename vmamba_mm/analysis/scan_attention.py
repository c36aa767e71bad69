"""The selective scan's implicit attention: how much each source token feeds a query token.

Unrolling the recurrence ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = <C_t, h_t>
+ D u_t`` from ``h_{-1} = 0`` gives, per channel, a causal linear operator on ``u``::

    y_t = sum_{s <= t} w_{t,s} u_s + D u_t,
    w_{t,s} = sum_n C_t[n] * exp(A[n] * (delta_{s+1} + ... + delta_t)) * delta_s * B_s[n].

``scan_weights`` returns ``w_{t,s}`` for one query step ``t`` exactly (it is the operator, not an
approximation: ``sum_s w_{t,s} u_s + D u_t`` reproduces the scan's ``y_t``). The decays are taken
as exponentials of differences of a float64 running sum of delta; with A < 0 and delta > 0 every
exponent is <= 0, so nothing overflows however long the route.

For an SS2D block, ``block_scan_attention`` takes the scan's inputs, which the mixer recomputes
from its weights and the map the block received (``TokenMixer.route_scan_inputs``), and
returns, for one query pixel, each route's weights laid back on the pixel grid (zero where the
route has not yet passed) per channel. Summing the four routes
gives the merged operator: SS2D's output at a pixel is the sum of its routes' outputs there.

torch only: nothing here needs the mm packages.
"""
import torch

from vmamba_kernels import NUM_ROUTES, pixel_steps


def scan_weights(delta, A, B, C, query):
    """Weights ``w[d, s]`` of source steps ``s <= query`` on step ``query``, per channel.

    delta: (dim, L), the step sizes as the recurrence uses them (after any bias and softplus);
    A: (dim, N); B, C: (N, L), shared by the channels (one group). Returns (dim, query + 1),
    float64.
    """
    if delta.dim() != 2 or A.dim() != 2 or B.dim() != 2 or C.dim() != 2:
        raise ValueError(f'scan_weights expects delta (dim, L), A (dim, N), B and C (N, L); got '
                         f'{tuple(delta.shape)}, {tuple(A.shape)}, {tuple(B.shape)}, '
                         f'{tuple(C.shape)}.')
    dim, length = delta.shape
    state = A.shape[1]
    if A.shape[0] != dim or tuple(B.shape) != (state, length) or tuple(C.shape) != (state,
                                                                                    length):
        raise ValueError(f'scan_weights: shapes do not agree: delta {tuple(delta.shape)}, A '
                         f'{tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)} (expected A '
                         f'({dim}, N), B and C (N, {length})).')
    if not 0 <= query < length:
        raise ValueError(f'scan_weights: query step {query} is outside 0..{length - 1}.')
    delta = delta[:, :query + 1].double()
    # elapsed[d, s] = delta_{s+1} + ... + delta_query, the time the input at s decays for.
    running = delta.cumsum(-1)
    elapsed = running[:, -1:] - running
    decay = torch.exp(elapsed.unsqueeze(-1) * A.double().unsqueeze(1))  # (dim, s, N)
    source = delta.unsqueeze(-1) * B[:, :query + 1].double().t().unsqueeze(0)  # (dim, s, N)
    return (decay * source * C[:, query].double()).sum(-1)


def block_scan_attention(mixer, block_input, query, sample=0):
    """Each route's implicit attention on the query pixel, laid on the grid, per channel.

    mixer: a token mixer whose ``supports_scan_attention()`` is True (SS2D with the 1D scan);
    block_input: the map its forward received (the output of the block's norm); query: (row,
    column) on the block's grid. Returns a dict: ``weights`` (routes, D, H, W) float64, the
    weight of every source pixel on the query in each route (zero at pixels the route visits
    after the query), plus the entries of the mixer's ``route_scan_inputs``.
    """
    inputs = mixer.route_scan_inputs(block_input)
    height, width = inputs['height'], inputs['width']
    row, column = query
    if not (0 <= row < height and 0 <= column < width):
        raise ValueError(f'query pixel ({row}, {column}) is outside the block\'s {height}x{width} '
                         'grid.')
    pixel = row * width + column
    steps = pixel_steps(inputs['scan_order'], height, width)
    dim = inputs['u'].shape[2]
    weights = torch.zeros(NUM_ROUTES, dim, height * width, dtype=torch.float64)
    for route in range(NUM_ROUTES):
        step = int(steps[route, pixel])
        route_weights = scan_weights(inputs['delta'][sample, route], inputs['A'][route],
                                     inputs['B'][sample, route], inputs['C'][sample, route], step)
        weights[route].index_copy_(1, inputs['pixels'][route, :step + 1].cpu(),
                                   route_weights.cpu())
    inputs['weights'] = weights.view(NUM_ROUTES, dim, height, width)
    return inputs


def reduce_channels(weights):
    """(..., D, H, W) per-channel weights -> (..., H, W): the mean over channels (signed)."""
    return weights.mean(dim=-3)
