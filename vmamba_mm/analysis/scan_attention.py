"""The selective scan's implicit attention: how much each source token feeds a query token.

Unrolling the recurrence ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = <C_t, h_t>
+ D u_t`` from ``h_{-1} = 0`` gives, per channel, a causal linear operator on ``u``::

    y_t = sum_{s <= t} w_{t,s} u_s + D u_t,
    w_{t,s} = sum_n C_t[n] * exp(A[n] * (delta_{s+1} + ... + delta_t)) * delta_s * B_s[n].

``scan_weights`` returns ``w_{t,s}`` for one query step ``t`` exactly (it is the operator, not an
approximation: ``sum_s w_{t,s} u_s + D u_t`` reproduces the scan's ``y_t``). The decays are taken
as exponentials of differences of a float64 running sum of delta; with A < 0 and delta > 0 every
exponent is <= 0, so nothing overflows however long the route.

For an SS2D block, ``block_scan_attention`` recomputes the scan's inputs from the block's weights
and the map the block received, and returns, for one query pixel, each route's weights laid back
on the pixel grid (zero where the route has not yet passed) per channel. Summing the four routes
gives the merged operator: SS2D's output at a pixel is the sum of its routes' outputs there.

torch only: nothing here needs the mm packages.
"""
import torch
import torch.nn.functional as F

from vmamba_kernels.common.composite import route_parameters
from vmamba_kernels.common.routes import NUM_ROUTES, pixel_steps, route_pixels


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


def _channels_first_map(x, channel_first):
    return x if channel_first else x.permute(0, 3, 1, 2)


def scan_input(ss2d, block_input):
    """The (B, D, H, W) map SS2D scans, recomputed from the map its forward received."""
    x = ss2d.in_proj(block_input)
    if ss2d.gated:
        x = x.chunk(2, dim=1 if ss2d.channel_first else -1)[0]
    x = _channels_first_map(x, ss2d.channel_first)
    if ss2d.conv2d is not None:
        x = ss2d.conv2d(x)
    return ss2d.act(x)


def route_scan_inputs(ss2d, block_input):
    """Everything the scan of each route reads, in the route's step order, float32.

    Returns a dict: ``u`` (B, routes, D, L), ``delta`` (after bias and softplus) the same shape,
    ``A`` (routes, D, N), ``B`` and ``C`` (B, routes, N, L), ``D`` (routes, D), the ``pixels``
    table (routes, L) and the grid ``height``, ``width``.
    """
    if ss2d.scan_2d:
        raise ValueError('block_scan_attention covers the 1D scan; this block uses the 2D scan '
                         '(scan_2d=True), whose weights follow L-shaped paths.')
    with torch.no_grad():
        x = scan_input(ss2d, block_input).float()
        batch, dim, height, width = x.shape
        length = height * width
        pixels = route_pixels(ss2d.scan_order, height, width, device=x.device)
        flat = x.reshape(batch, 1, dim, length).expand(batch, NUM_ROUTES, dim, length)
        u = flat.gather(-1, pixels.view(1, NUM_ROUTES, 1, length).expand_as(flat))
        dts, Bs, Cs = route_parameters(u, ss2d.x_proj_weight.float(),
                                       ss2d.dt_projs_weight.float(), ss2d.state_size)
        delta = F.softplus(dts + ss2d.dt_projs_bias.float().view(1, NUM_ROUTES, dim, 1))
        A = -torch.exp(ss2d.A_logs.float()).view(NUM_ROUTES, dim, -1)
    return dict(u=u, delta=delta, A=A, B=Bs, C=Cs, D=ss2d.Ds.detach().float().view(NUM_ROUTES,
                                                                                       dim),
                pixels=pixels, height=height, width=width)


def block_scan_attention(ss2d, block_input, query, sample=0):
    """Each route's implicit attention on the query pixel, laid on the grid, per channel.

    ss2d: an SS2D module (``vmamba_mm.models.ss2d``); block_input: the map its forward received
    (the output of the block's norm); query: (row, column) on the block's grid. Returns a dict:
    ``weights`` (routes, D, H, W) float64, the weight of every source pixel on the query in each
    route (zero at pixels the route visits after the query), plus ``route_scan_inputs``' entries.
    """
    inputs = route_scan_inputs(ss2d, block_input)
    height, width = inputs['height'], inputs['width']
    row, column = query
    if not (0 <= row < height and 0 <= column < width):
        raise ValueError(f'query pixel ({row}, {column}) is outside the block\'s {height}x{width} '
                         'grid.')
    pixel = row * width + column
    steps = pixel_steps(ss2d.scan_order, height, width)
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
