"""SS2D: the 2D selective-scan mixer of a VSS block.

Parameter names follow the official release (``in_proj``, ``conv2d``, ``x_proj_weight``,
``dt_projs_weight``, ``dt_projs_bias``, ``A_logs``, ``Ds``, ``out_norm``, ``out_proj``) so that
released checkpoints load as they are.
"""
import math

import torch
import torch.nn as nn

from vmamba_kernels import NUM_ROUTES, dispatch

from .layers import channel_dim, linear_layer, norm_layer


def _inverse_softplus(x):
    return x + torch.log(-torch.expm1(-x))


class SS2D(nn.Module):
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
        scan_backend: selective-scan backend name, or None for the automatic choice.
    """

    def __init__(self, channels, state_size=16, expand_ratio=2.0, dt_rank='auto', conv_size=3,
                 conv_bias=True, gated=True, scan_order='cross', scan_2d=False,
                 channel_first=False, scan_backend=None, dt_min=0.001, dt_max=0.1,
                 dt_init_floor=1e-4):
        super().__init__()
        inner = int(expand_ratio * channels)
        self.dt_rank = math.ceil(channels / 16) if dt_rank == 'auto' else int(dt_rank)
        self.state_size = state_size
        self.gated = gated
        self.scan_order = scan_order
        self.scan_2d = scan_2d
        self.scan_operation = 'cross_selective_scan_2d' if scan_2d else 'cross_selective_scan'
        self.channel_first = channel_first
        self.scan_backend = scan_backend
        # Backend name per device type, resolved at the first forward there (see ``scan``).
        self._resolved_backends = {}
        self._resolved_conv_backends = {}  # likewise, depthwise_conv_silu's

        self.in_proj = linear_layer(channels, inner * (2 if gated else 1), False, channel_first)
        self.act = nn.SiLU()
        self.conv2d = (nn.Conv2d(inner, inner, conv_size, padding=(conv_size - 1) // 2,
                                 groups=inner, bias=conv_bias) if conv_size > 1 else None)
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
        self.dt_projs_bias = nn.Parameter(_inverse_softplus(dt))
        # A = -exp(A_logs) with A_n = -n (S4D-real init), one row per route and channel.
        self.A_logs = nn.Parameter(
            torch.log(torch.arange(1, state_size + 1, dtype=torch.float32)).repeat(
                routes * inner, 1))
        self.Ds = nn.Parameter(torch.ones(routes * inner))
        self.out_norm = norm_layer(inner, channel_first)
        self.out_proj = linear_layer(inner, channels, False, channel_first)

    def forward(self, x):
        x = self.in_proj(x)
        if self.gated:
            x, z = x.chunk(2, dim=channel_dim(self.channel_first))
        if not self.channel_first:
            x = x.permute(0, 3, 1, 2)
        y = self.scan(self.conv_and_act(x))
        y = self.out_norm(y)
        if self.gated:
            y = y * self.act(z)
        return self.out_proj(y)

    def conv_and_act(self, x):
        """SiLU(conv2d(x)), the scan's input. On the CPU the depthwise conv and the SiLU are one
        operation, ``vmamba_kernels.depthwise_conv_silu``, whose backend follows ``scan_backend``
        (chosen once, like the scan's)."""
        if self.conv2d is None:
            return self.act(x)
        if x.device.type != 'cpu':
            return self.act(self.conv2d(x))
        backend = dispatch.resolve_once(self._resolved_conv_backends, 'depthwise_conv_silu', 'cpu',
                                        self.scan_backend)
        conv = dispatch.implementation('depthwise_conv_silu', backend).fn
        return conv(x, self.conv2d.weight, self.conv2d.bias)

    def scan_implementation(self, device_type):
        """The scan core's kernel (1D or 2D scans) for this device, chosen once and then reused,
        so a compiled graph holds a plain call (``resolve_backend_name`` is a constant to
        dynamo)."""
        backend = dispatch.resolve_once(self._resolved_backends, self.scan_operation,
                                        device_type, self.scan_backend)
        return dispatch.implementation(self.scan_operation, backend).fn

    def scan(self, x):
        """(B, D, H, W) -> merged scan output in this module's layout."""
        y = self.scan_implementation(x.device.type)(
            x, self.x_proj_weight, self.dt_projs_weight, -torch.exp(self.A_logs.float()),
            self.Ds.float(), self.dt_projs_bias.reshape(-1).float(), self.scan_order,
            self.channel_first)
        return y.to(x.dtype)
