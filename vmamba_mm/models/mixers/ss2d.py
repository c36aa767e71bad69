"""SS2D: VMamba's mixer, a selective scan over four routes of a 2D map; with ``scan_2d=True``
each route is scanned as a 2D grid with 2DMamba's 2D selective scan (2DVMamba).

Parameter names follow the official release (``in_proj``, ``conv2d``, ``x_proj_weight``,
``dt_projs_weight``, ``dt_projs_bias``, ``A_logs``, ``Ds``, ``out_norm``, ``out_proj``) so that
released checkpoints load as they are.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vmamba_kernels import NUM_ROUTES, SCAN_ORDERS, route_parameters, route_pixels

from ..layers import channel_dim, inverse_softplus, linear_layer, norm_layer
from .base import MIXERS, TokenMixer


@MIXERS.register('ss2d')
class SS2D(TokenMixer):
    """Selective scan over four routes of a 2D map.

    Args:
        channels: block width (d_model).
        state_size: SSM state size N (official ``ssm_d_state``).
        expand_ratio: inner width over block width (``ssm_ratio``).
        dt_rank: rank of the delta projection, or 'auto' = ceil(channels / 16).
        conv_size: depthwise conv kernel before the scan; 1 or less means no conv (``ssm_conv``).
        conv_bias: whether that conv has a bias (``ssm_conv_bias``).
        gated: multiply the output by SiLU(z) from a second half of in_proj (official forward
            types without the ``_noz`` suffix).
        scan_order: 'cross', 'bidirectional' or 'unidirectional' (see ``vmamba_kernels``).
        scan_2d: scan each route as a 2D grid with 2DMamba's 2D selective scan (2DVMamba):
            row-major routes as H x W, column-major ones as W x H. No parameter changes.
        channel_first: memory layout of the maps this module receives and returns.
        scan_backend: backend name of its operations, or None for the automatic choice.
    """

    def __init__(self, channels, *, state_size=16, expand_ratio=2.0, dt_rank='auto',
                 conv_size=3, conv_bias=True, gated=True, scan_order='cross', scan_2d=False,
                 channel_first=False, scan_backend=None, dt_min=0.001, dt_max=0.1,
                 dt_init_floor=1e-4):
        super().__init__('cross_selective_scan_2d' if scan_2d else 'cross_selective_scan',
                         channel_first=channel_first, scan_backend=scan_backend)
        inner = int(expand_ratio * channels)
        self.dt_rank = math.ceil(channels / 16) if dt_rank == 'auto' else int(dt_rank)
        self.state_size = state_size
        self.gated = gated
        self.scan_order = scan_order
        self.scan_2d = scan_2d
        self.build_frame_layers(channels, inner, conv_size=conv_size, conv_bias=conv_bias,
                                gated=gated, scan_backend=scan_backend)
        routes = NUM_ROUTES
        self.x_proj_weight = nn.Parameter(
            torch.empty(routes, self.dt_rank + 2 * state_size, inner).uniform_(
                -inner**-0.5, inner**-0.5))
        dt_std = self.dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(
            torch.empty(routes, inner, self.dt_rank).uniform_(-dt_std, dt_std))
        # Initial step sizes log-uniform in [dt_min, dt_max], stored through softplus^-1.
        dt = torch.exp(
            torch.rand(routes, inner) * (math.log(dt_max) - math.log(dt_min)) +
            math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(inverse_softplus(dt))
        # A = -exp(A_logs) with A_n = -n (S4D-real init), one row per route and channel.
        self.A_logs = nn.Parameter(
            torch.log(torch.arange(1, state_size + 1, dtype=torch.float32)).repeat(
                routes * inner, 1))
        self.Ds = nn.Parameter(torch.ones(routes * inner))
        self.out_norm = norm_layer(inner, channel_first)
        self.out_proj = linear_layer(inner, channels, False, channel_first)

    @classmethod
    def options_from_arch(cls, settings):
        return cls.shared_options_from_arch(settings)

    @classmethod
    def check_options(cls, options):
        cls.check_shared_options(options, flags=('conv_bias', 'gated', 'scan_2d'),
                                 scan_orders=SCAN_ORDERS)

    @classmethod
    def parameter_estimate(cls, channels, options):
        sizes = cls.estimate_sizes(channels, options, expand_ratio=2.0, state_size=16, gated=True)
        return (sizes.projections + sizes.inner * sizes.conv_weights +
                NUM_ROUTES * sizes.inner * (2 * sizes.rank + 3 * sizes.state))

    def forward(self, x):
        x = self.in_proj(x)
        if self.gated:
            x, z = x.chunk(2, dim=channel_dim(self.channel_first))
        if not self.channel_first:
            x = x.permute(0, 3, 1, 2)
        y = self.run_scan(self.conv_and_act(x))
        y = self.out_norm(y)
        if self.gated:
            y = y * self.act(z)
        return self.out_proj(y)

    def conv_and_act(self, x):
        """SiLU(conv2d(x)), the scan's input: ``vmamba_kernels.depthwise_conv_silu`` on the
        CPU (its backend follows ``scan_backend``, chosen once like the scan's)."""
        if self.conv2d is None:
            return self.act(x)
        if x.device.type != 'cpu':
            return self.act(self.conv2d(x))
        return self.conv_kernel(x, self.conv2d.weight, self.conv2d.bias)

    def scan(self, x):
        """(B, D, H, W) -> merged scan output in this module's layout."""
        y = self.scan_kernel(x, self.x_proj_weight, self.dt_projs_weight,
                             -torch.exp(self.A_logs.float()), self.Ds.float(),
                             self.dt_projs_bias.reshape(-1).float(), self.scan_order,
                             self.channel_first)
        return y.to(x.dtype)

    def skip_term(self, x):
        """(B, D, H, W) -> the sum over routes of D times x, in this module's layout: what every
        route adds besides its recurrence."""
        channels = x.shape[1]
        d_sum = self.Ds.float().view(-1, channels).sum(0)
        if self.channel_first:
            y = x.float() * d_sum.view(channels, 1, 1)
        else:
            y = x.float().permute(0, 2, 3, 1) * d_sum
        return y.to(x.dtype)

    # ------------------------------------------------------------ implicit attention
    def supports_scan_attention(self):
        # The 2D scan's weights follow L-shaped paths, which the route-wise operator does not
        # describe.
        return not self.scan_2d

    def scan_input(self, mixer_input):
        """The (B, D, H, W) map the scan reads, recomputed from the map the forward received."""
        x = self.in_proj(mixer_input)
        if self.gated:
            x = x.chunk(2, dim=channel_dim(self.channel_first))[0]
        if not self.channel_first:
            x = x.permute(0, 3, 1, 2)
        if self.conv2d is not None:
            x = self.conv2d(x)
        return self.act(x)

    def route_scan_inputs(self, mixer_input):
        """Everything the scan of each route reads, in the route's step order, float32.

        Returns a dict: ``u`` (B, routes, D, L), ``delta`` (after bias and softplus) the same
        shape, ``A`` (routes, D, N), ``B`` and ``C`` (B, routes, N, L), ``D`` (routes, D), the
        ``pixels`` table (routes, L), the grid ``height``, ``width`` and the ``scan_order``.
        """
        if not self.supports_scan_attention():
            raise ValueError('scan attention covers the 1D scan; this SS2D uses the 2D scan '
                             '(scan_2d=True), whose weights follow L-shaped paths.')
        with torch.no_grad():
            x = self.scan_input(mixer_input).float()
            batch, dim, height, width = x.shape
            length = height * width
            pixels = route_pixels(self.scan_order, height, width, device=x.device)
            flat = x.reshape(batch, 1, dim, length).expand(batch, NUM_ROUTES, dim, length)
            u = flat.gather(-1, pixels.view(1, NUM_ROUTES, 1, length).expand_as(flat))
            dts, Bs, Cs = route_parameters(u, self.x_proj_weight.float(),
                                           self.dt_projs_weight.float(), self.state_size)
            delta = F.softplus(dts + self.dt_projs_bias.float().view(1, NUM_ROUTES, dim, 1))
            A = -torch.exp(self.A_logs.float()).view(NUM_ROUTES, dim, -1)
        return dict(u=u, delta=delta, A=A, B=Bs, C=Cs,
                    D=self.Ds.detach().float().view(NUM_ROUTES, dim), pixels=pixels,
                    height=height, width=width, scan_order=self.scan_order)
