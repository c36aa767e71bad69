"""U-Mamba2's bottleneck layer: one Mamba2 block over the tokens of a feature map of any dimension.

A (batch, channels, *spatial) map (2D, 3D, any) is flattened to (batch, L, channels) tokens in
raster order, then::

    LayerNorm -> in_proj -> z | xBC | dt
    xBC -> causal depthwise conv1d (width d_conv) along the tokens -> SiLU -> x | B | C
    y = ssd_scan(x, dt, A, B, C, D, dt_bias, dt_softplus=True)      (vmamba_kernels, any backend)
    y = RMSNorm(y * SiLU(z)) per group                                (Mamba2's gated RMSNorm)
    out_proj -> reshaped back to (batch, channels, *spatial)

with ``inner = expand * channels`` split into ``inner / headdim`` heads, scalar A per head, B and
C of ``d_state`` per group. There is no residual inside the layer: U-Mamba2 replaces the
bottleneck map with the layer's output. The SSD scan computes its decays and segment sums in
float32 whatever the autocast dtype, and so does the gated norm, so the layer stays finite
under bf16 and fp16 autocast.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from vmamba_kernels import dispatch

from ..layers import inverse_softplus


def _divisors(number):
    return [d for d in range(1, number + 1) if number % d == 0]


class GatedRMSNorm(nn.Module):
    """RMSNorm(y * SiLU(z)) over groups of ``width / groups`` channels, times a weight; in float32,
    returned in y's dtype."""

    def __init__(self, width, groups=1, eps=1e-5):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, y, z):
        gated = y.float() * F.silu(z.float())
        grouped = gated.unflatten(-1, (self.groups, -1))
        normed = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed.flatten(-2) * self.weight.float()).to(y.dtype)


class Mamba2Layer(nn.Module):
    """Mamba2 over the flattened tokens of a (batch, channels, *spatial) map; see the module
    docstring.

    Args:
        channels: channels of the map.
        d_state: N, the state size per group (B and C width).
        d_conv: width of the causal depthwise convolution.
        expand: inner width = expand * channels.
        headdim: channels per head; must divide the inner width.
        groups: groups of heads sharing B and C; must divide the heads.
        chunk_size: the SSD scan's chunk length (changes the work, not the result).
        dt_min, dt_max, dt_init_floor: Mamba2's step initialisation (log-uniform, floored).
        a_init_range: A = -U(a_init_range) per head at initialisation.
        backend: the ``ssd_scan`` backend, or None for the dispatch's choice (logged once).
    """

    def __init__(self, channels, d_state=32, d_conv=4, expand=2, headdim=80, groups=1,
                 chunk_size=256, dt_min=1e-3, dt_max=0.1, dt_init_floor=1e-4,
                 a_init_range=(1.0, 16.0), backend=None):
        super().__init__()
        inner = expand * channels
        if inner % headdim:
            raise ValueError(
                f'Mamba2Layer: the inner width expand * channels = {expand} * {channels} = {inner} '
                f'does not divide into heads of headdim={headdim}; use a headdim that divides '
                f'{inner} (one of {_divisors(inner)}) or change the channels.')
        heads = inner // headdim
        if heads % groups:
            raise ValueError(f'Mamba2Layer: {heads} heads (inner {inner} / headdim {headdim}) '
                             f'do not divide into groups={groups}; use a number of groups that '
                             f'divides {heads}.')
        self.channels, self.inner, self.heads, self.headdim = channels, inner, heads, headdim
        self.groups, self.d_state, self.chunk_size = groups, d_state, chunk_size
        # the SSD scan bound to this layer's backend choice (the FLOP counter pins it)
        self.scan_kernel = dispatch.bind('ssd_scan', backend)
        conv_width = inner + 2 * groups * d_state
        self.norm = nn.LayerNorm(channels)
        self.in_proj = nn.Linear(channels, inner + conv_width + heads, bias=False)
        self.conv1d = nn.Conv1d(conv_width, conv_width, d_conv, groups=conv_width,
                                padding=d_conv - 1)
        steps = torch.exp(torch.rand(heads) * (math.log(dt_max) - math.log(dt_min))
                          + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(inverse_softplus(steps))
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(*a_init_range)))
        self.D = nn.Parameter(torch.ones(heads))
        self.gate_norm = GatedRMSNorm(inner, groups=groups)
        self.out_proj = nn.Linear(inner, channels, bias=False)

    def forward(self, feature_map):
        if feature_map.dim() < 3 or feature_map.shape[1] != self.channels:
            raise ValueError(f'Mamba2Layer: input of shape {tuple(feature_map.shape)}; expected '
                             f'(batch, {self.channels}, *spatial) with at least one spatial '
                             f'dimension.')
        batch, spatial = feature_map.shape[0], feature_map.shape[2:]
        tokens = self.norm(feature_map.flatten(2).transpose(1, 2))
        length = tokens.shape[1]
        z, xbc, dt = self.in_proj(tokens).split(
            [self.inner, self.inner + 2 * self.groups * self.d_state, self.heads], dim=-1)
        xbc = F.silu(self.conv1d(xbc.transpose(1, 2))[..., :length].transpose(1, 2))
        x, b, c = xbc.split([self.inner, self.groups * self.d_state,
                             self.groups * self.d_state], dim=-1)
        y = self.scan_kernel(x.unflatten(-1, (self.heads, self.headdim)), dt,
                     -torch.exp(self.A_log.float()),
                     b.unflatten(-1, (self.groups, self.d_state)),
                     c.unflatten(-1, (self.groups, self.d_state)),
                     chunk_size=self.chunk_size, D=self.D.float(), dt_bias=self.dt_bias.float(),
                     dt_softplus=True)
        y = self.gate_norm(y.flatten(-2), z)
        out = self.out_proj(y)
        return out.transpose(1, 2).reshape(batch, self.channels, *spatial)

    def extra_repr(self):
        return (f'channels={self.channels}, heads={self.heads} x headdim={self.headdim}, '
                f'd_state={self.d_state}, groups={self.groups}, chunk_size={self.chunk_size}')
