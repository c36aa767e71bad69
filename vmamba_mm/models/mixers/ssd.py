"""SSD: SS2D's four routes scanned by Mamba2's state space duality (VMamba's ``m0`` forward
type): one scalar decay per head, a wide state (64 by default), B and C shared by a route's
heads.

Per block, with ``inner`` = int(expand_ratio * channels) channels after in_proj and the
depthwise conv, and ``R`` = dt_rank: every route has ``R`` heads of ``inner / R`` channels (the
official m0 split), so the scan sees ``4 R`` heads in four groups (one per route). Each route's
projection gives its ``R`` step sizes directly (no low-rank delta projection, unlike SS2D) and
its B and C; ``dt' = softplus(dt + dt_projs_bias)``, ``A = -exp(A_logs)`` per head, ``Ds`` per
head and channel. The routes are merged back to pixel order by summing, as in SS2D.

Parameter names and shapes follow the official m0 module (``in_proj``, ``conv2d``,
``x_proj_weight`` (4, R + 2N, inner), ``A_logs`` (4, R), ``Ds`` (4, R, inner / R),
``dt_projs_bias`` (4, R), ``out_norm``, ``out_proj``), initialised as its ``v2`` scheme:
A_logs 0 (A = -1), Ds 1, dt_projs_bias uniform in [0, 0.1).
"""
import math

import torch
import torch.nn as nn

from vmamba_kernels import NUM_ROUTES, SCAN_ORDERS, pixel_steps, route_pixels

from ..layers import linear_layer, norm_layer
from .base import MIXERS, TokenMixer
from .ss2d import SS2D


def rows_of_each_image(t, index):
    """(B, M, C) -> (B, len(index), C), each image's rows ``index``: one ``index_select`` on
    dim 0 of the (B * M, C) rows, which copies 2.5 times faster on the CPU than along dim 1."""
    batch, rows, channels = t.shape
    offsets = torch.arange(batch, device=t.device).mul_(rows).unsqueeze(1)
    return t.reshape(-1, channels).index_select(0, (offsets + index).reshape(-1)).view(
        batch, -1, channels)


@MIXERS.register('ssd')
class SSD(TokenMixer):
    """SS2D's frame (in_proj, depthwise conv, SiLU, four routes, out_norm, optional SiLU(z)
    gate, out_proj) with every route scanned by ``vmamba_kernels.ssd_scan``.

    Args:
        channels: block width (d_model).
        state_size: SSD state size N (official ``ssm_d_state``; m0 uses 64).
        expand_ratio: inner width over block width (``ssm_ratio``).
        dt_rank: heads per route, or 'auto' = ceil(channels / 16) (``ssm_dt_rank``); it must
            divide the inner width.
        conv_size: depthwise conv kernel before the scan; 1 or less means no conv.
        conv_bias: whether that conv has a bias.
        gated: multiply the output by SiLU(z) from a second half of in_proj.
        scan_order: 'cross', 'bidirectional' or 'unidirectional' (see ``vmamba_kernels``).
        chunk_size: the chunked form's chunk length (changes the work, not the result).
        channel_first: memory layout of the maps this module receives and returns.
        scan_backend: backend name of its operations, or None for the automatic choice.
    """

    def __init__(self, channels, *, state_size=64, expand_ratio=2.0, dt_rank='auto',
                 conv_size=3, conv_bias=True, gated=True, scan_order='cross', chunk_size=64,
                 channel_first=False, scan_backend=None):
        super().__init__('ssd_scan', channel_first=channel_first, scan_backend=scan_backend)
        inner = int(expand_ratio * channels)
        heads = math.ceil(channels / 16) if dt_rank == 'auto' else int(dt_rank)
        if inner < 1 or inner % heads:
            raise ValueError(
                f"mixer 'ssd': the inner width {inner} (int(expand_ratio={expand_ratio} * "
                f'channels={channels}); arch: ssm_ratio * dims) does not split into dt_rank='
                f'{heads} heads (arch: ssm_dt_rank); choose a dt_rank that divides it.')
        self.inner = inner
        self.heads_per_route = heads
        self.head_dim = inner // heads
        self.state_size = state_size
        self.gated = gated
        self.scan_order = scan_order
        self.chunk_size = chunk_size
        self.build_frame_layers(channels, inner, conv_size=conv_size, conv_bias=conv_bias,
                                gated=gated, scan_backend=scan_backend)
        self.x_proj_weight = nn.Parameter(
            torch.empty(NUM_ROUTES, heads + 2 * state_size, inner).uniform_(
                -inner**-0.5, inner**-0.5))
        self.A_logs = nn.Parameter(torch.zeros(NUM_ROUTES, heads))
        self.Ds = nn.Parameter(torch.ones(NUM_ROUTES, heads, self.head_dim))
        self.dt_projs_bias = nn.Parameter(0.1 * torch.rand(NUM_ROUTES, heads))
        self.out_norm = norm_layer(inner, channel_first)
        self.out_proj = linear_layer(inner, channels, False, channel_first)

    # ------------------------------------------------------------ built from an arch
    @classmethod
    def options_from_arch(cls, settings):
        return cls.shared_options_from_arch(settings, without_scan_2d='scans 1D routes')

    @classmethod
    def check_options(cls, options):
        cls.check_shared_options(options, positive_ints=('state_size', 'dt_rank', 'chunk_size'),
                                 scan_orders=SCAN_ORDERS)

    @classmethod
    def parameter_estimate(cls, channels, options):
        sizes = cls.estimate_sizes(channels, options, expand_ratio=2.0, state_size=64, gated=True)
        heads = sizes.rank
        return (sizes.projections + sizes.inner * sizes.conv_weights +
                NUM_ROUTES * ((heads + 2 * sizes.state) * sizes.inner + 2 * heads + sizes.inner))

    # ------------------------------------------------------------ forward
    # SS2D's frame around the scan (in-projection, conv and SiLU, out-norm, gate, out-projection):
    # the same attributes, so the same methods.
    forward = SS2D.forward
    conv_and_act = SS2D.conv_and_act

    def scan(self, x):
        """(B, D, H, W) -> the four routes scanned by SSD and summed, in this module's layout.

        The routes are gathered straight into the scan's (batch, L, 4 R heads, headdim) layout,
        and merged by gathering each pixel's step of every route: one copy each way. B and C
        go to the scan as slices of the projection (the CPU kernel reads them in place).
        """
        batch, dim, height, width = x.shape
        length = height * width
        pixels = route_pixels(self.scan_order, height, width, device=x.device)  # (4, L)
        pixels_by_step = pixels.t().reshape(-1)  # step t, route k -> 4 t + k
        tokens = x.permute(0, 2, 3, 1).reshape(batch, length, dim)
        routes = rows_of_each_image(tokens, pixels_by_step).view(batch, length, NUM_ROUTES, dim)
        # (B, L, 4, R + 2N): each route's step sizes, B and C.
        projected = torch.einsum('blkd,kcd->blkc', routes, self.x_proj_weight.to(x.dtype))
        heads, state = self.heads_per_route, self.state_size
        dt, B, C = torch.split(projected, [heads, state, state], dim=-1)
        y = self.scan_kernel(routes.view(batch, length, NUM_ROUTES * heads, self.head_dim),
                             dt.reshape(batch, length, NUM_ROUTES * heads), self.decays(),
                             B, C, chunk_size=self.chunk_size,
                             D=self.Ds.float().view(NUM_ROUTES * heads, self.head_dim),
                             dt_bias=self.dt_projs_bias.float().view(-1), dt_softplus=True,
                             out_dtype=torch.float32)
        # Where each (pixel, route) is in the scan output, flattened as (step, route).
        steps = pixel_steps(self.scan_order, height, width, device=x.device)
        merge_index = (steps * NUM_ROUTES +
                       torch.arange(NUM_ROUTES, device=x.device)[:, None]).t().reshape(-1)
        y = rows_of_each_image(y.reshape(batch, length * NUM_ROUTES, dim), merge_index)
        y = y.view(batch, height, width, NUM_ROUTES, dim).sum(3).to(x.dtype)
        return y.permute(0, 3, 1, 2) if self.channel_first else y

    def decays(self):
        """A per head, (4 R,) float32: -exp(A_logs)."""
        return -torch.exp(self.A_logs.float()).view(-1)

    def skip_term(self, x):
        """(B, D, H, W) -> the sum over routes of D times x, in this module's layout: what every
        route adds besides its recurrence."""
        d_sum = self.Ds.float().view(NUM_ROUTES, -1).sum(0)
        if self.channel_first:
            y = x.float() * d_sum.view(-1, 1, 1)
        else:
            y = x.float().permute(0, 2, 3, 1) * d_sum
        return y.to(x.dtype)
