"""V2M: the 2D state-space model of "V2M: Visual 2-Dimensional Mamba" (arXiv 2410.10382) as a
token mixer, computed as two cascaded 1D selective scans in four corner orientations, for any
H x W grid (non-square and odd included).

Written from the paper's description (``shared/reference/scan-families.md``, section 2), not
from the release, which needs square grids and returns its tokens transposed.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vmamba_kernels import ORIENTATION_FLIPS

from ..layers import channel_dim, inverse_softplus, linear_layer, norm_layer
from .base import MIXERS, TokenMixer, depthwise_conv

NUM_ORIENTATIONS = len(ORIENTATION_FLIPS)


def orient(x, orientation):
    """(..., H, W) in pixel order -> the grid as ``orientation``'s scan sees it (flips are their
    own inverse, so this also maps back)."""
    flip_rows, flip_columns = ORIENTATION_FLIPS[orientation]
    dims = [d for d, flip in ((-2, flip_rows), (-1, flip_columns)) if flip]
    return x.flip(dims) if dims else x


@MIXERS.register('v2m')
class V2M(TokenMixer):
    """V2M's 2D SSM over four corner orientations, in SS2D's frame (in_proj, conv, scan, norm,
    SiLU(z) gate, out_proj).

    For orientation ``o`` (the map flipped so that the scan starts at one corner), with the map
    ``x`` after in_proj and SiLU(conv2d):

    - stage 1 scans every row left to right with input-dependent delta and B (``row_*``
      parameters, from ``x``) and C fixed to ones, so the N states of a channel are summed:
      ``r[i, j] = sum_n h[i, j, n] + D1 * x[i, j]``, ``h[i, j] = exp(delta A1) h[i, j-1] +
      delta B x[i, j]``;
    - stage 2 runs its own depthwise conv and SiLU on ``r``, then scans every column top to
      bottom with input-dependent delta and C (``column_*`` parameters, from that conv's output
      ``v``) and B fixed to ones: ``g[i, j] = exp(delta A2) g[i-1, j] + delta v[i, j]`` (all N
      states), ``y_o[i, j] = <C[i, j], g[i, j]> + D2 * v[i, j]``;
    - each ``y_o`` is flipped back to pixel order. The forward pair (orientations whose rows run
      left to right: top-left and bottom-left starts) is summed, the backward pair (top-right,
      bottom-right) is summed, and the two sums are averaged: ``(y_tl + y_bl + y_tr + y_br) / 2``.

    Every orientation has its own stage-1 and stage-2 parameters (projections, A, D, bias, conv);
    the first conv (before stage 1) is shared, as SS2D's. The SiLU(z) gate (``gated``) acts on
    the merged output after ``out_norm``, as in SS2D (V2M's Vim block gates its Mamba output).
    Both stages run through the dispatch's ``v2m_scan`` (on the CPU one C++ pass that walks
    the lines in place on the channels-last map).

    Args:
        channels: block width (d_model).
        state_size: SSM state size N of both stages (official ``ssm_d_state``).
        expand_ratio: inner width over block width (``ssm_ratio``).
        dt_rank: rank of the delta projections, or 'auto' = ceil(channels / 16).
        conv_size: depthwise conv kernel before each stage; 1 or less means no conv.
        conv_bias: whether those convs have a bias.
        gated: multiply the output by SiLU(z) from a second half of in_proj.
        channel_first: memory layout of the maps this module receives and returns.
        scan_backend: backend name of its operations, or None for the automatic choice.
    """

    def __init__(self, channels, *, state_size=1, expand_ratio=1.0, dt_rank='auto', conv_size=3,
                 conv_bias=False, gated=False, channel_first=False, scan_backend=None,
                 dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
        super().__init__('v2m_scan', channel_first=channel_first,
                         scan_backend=scan_backend)
        inner = int(expand_ratio * channels)
        self.inner = inner
        self.dt_rank = math.ceil(channels / 16) if dt_rank == 'auto' else int(dt_rank)
        self.state_size = state_size
        self.gated = gated
        self.build_frame_layers(channels, inner, conv_size=conv_size, conv_bias=conv_bias,
                                gated=gated, scan_backend=scan_backend)
        self.column_conv2d = depthwise_conv(NUM_ORIENTATIONS * inner, conv_size, conv_bias)
        init = dict(dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor)
        for stage in ('row', 'column'):
            for name, value in self._stage_parameters(inner, **init).items():
                self.register_parameter(f'{stage}_{name}', value)
        self.out_norm = norm_layer(inner, channel_first)
        self.out_proj = linear_layer(inner, channels, False, channel_first)

    def _stage_parameters(self, inner, dt_min, dt_max, dt_init_floor):
        """One stage's parameters for the four orientations, initialised as SS2D's: the
        projection to (delta rank + N), the delta projection and bias (step sizes log-uniform in
        [dt_min, dt_max]), A = -exp(A_logs) with A_n = -n, and D = 1."""
        rank, state = self.dt_rank, self.state_size
        x_proj = torch.empty(NUM_ORIENTATIONS, rank + state, inner).uniform_(
            -inner**-0.5, inner**-0.5)
        dt_proj = torch.empty(NUM_ORIENTATIONS, inner, rank).uniform_(-rank**-0.5, rank**-0.5)
        dt = torch.exp(
            torch.rand(NUM_ORIENTATIONS, inner) * (math.log(dt_max) - math.log(dt_min)) +
            math.log(dt_min)).clamp(min=dt_init_floor)
        a_logs = torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(
            NUM_ORIENTATIONS * inner, 1)
        return dict(x_proj_weight=nn.Parameter(x_proj), dt_projs_weight=nn.Parameter(dt_proj),
                    dt_projs_bias=nn.Parameter(inverse_softplus(dt)),
                    A_logs=nn.Parameter(a_logs),
                    Ds=nn.Parameter(torch.ones(NUM_ORIENTATIONS * inner)))

    # ------------------------------------------------------------ built from an arch
    @classmethod
    def options_from_arch(cls, settings):
        return cls.shared_options_from_arch(settings, without_scan_2d='has its own 2D scan')

    @classmethod
    def check_options(cls, options):
        cls.check_shared_options(options)

    @classmethod
    def parameter_estimate(cls, channels, options):
        sizes = cls.estimate_sizes(channels, options, expand_ratio=1.0, state_size=1, gated=False)
        per_stage = NUM_ORIENTATIONS * sizes.inner * (2 * sizes.rank + 2 * sizes.state + 2)
        return (sizes.projections + (1 + NUM_ORIENTATIONS) * sizes.inner * sizes.conv_weights +
                2 * per_stage)

    # ------------------------------------------------------------ forward
    def forward(self, x):
        x = self.in_proj(x)
        if self.gated:
            x, z = x.chunk(2, dim=channel_dim(self.channel_first))
        if not self.channel_first:
            x = x.permute(0, 3, 1, 2)
        conv = self.conv2d
        y = self.run_scan(self.conv_and_act(x, *((conv.weight, conv.bias) if conv is not None
                                                 else (None, None))))
        y = self.out_norm(y)
        if self.gated:
            y = y * self.act(z)
        return self.out_proj(y)

    def conv_and_act(self, x, weight, bias):
        """SiLU(depthwise conv(x)); on the CPU ``vmamba_kernels.depthwise_conv_silu`` (one
        operation)."""
        if weight is None:
            return self.act(x)
        if x.device.type != 'cpu':
            return self.act(F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2,
                                     groups=x.shape[1]))
        return self.conv_kernel(x, weight, bias)

    def pixel_frame_column_conv(self):
        """The stage-2 conv's kernel as it acts on the map in pixel order: each orientation's
        kernel flipped as its grid is (a conv in a flipped frame is the flipped conv)."""
        if self.column_conv2d is None:
            return None, None
        kernels = self.column_conv2d.weight.unflatten(0, (NUM_ORIENTATIONS, -1))
        kernels = torch.stack([orient(kernels[o], o) for o in range(NUM_ORIENTATIONS)])
        return kernels.flatten(0, 1), self.column_conv2d.bias

    def stage_parameters(self, stage):
        """``v2m_scan``'s weights of ``stage``: x_proj_weight, dt_projs_weight, A, D, delta_bias
        (A, D and the bias float32)."""
        weight = getattr(self, f'{stage}_x_proj_weight'), getattr(self, f'{stage}_dt_projs_weight')
        return (*weight, -torch.exp(getattr(self, f'{stage}_A_logs').float()),
                getattr(self, f'{stage}_Ds').float(),
                getattr(self, f'{stage}_dt_projs_bias').reshape(-1).float())

    def scan(self, x):
        """(B, D, H, W) -> the merged cascade of the four orientations in this module's layout:
        ``vmamba_kernels.v2m_scan``'s row stage, the stage-2 conv and SiLU in pixel order (each
        orientation's kernel flipped as its grid is), its column stage (the orientations summed),
        halved."""
        batch, dim, height, width = x.shape
        row_out = self.scan_kernel(x.permute(0, 2, 3, 1), *self.stage_parameters('row'), 'row')
        # (B, H, W, 4, D) -> (B, 4 * D, H, W) in channels-last memory: the layout the CPU conv
        # reads and writes.
        row_out = row_out.to(x.dtype).reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        v = self.conv_and_act(row_out, *self.pixel_frame_column_conv())
        v = v.permute(0, 2, 3, 1).unflatten(3, (NUM_ORIENTATIONS, dim))
        y = self.scan_kernel(v, *self.stage_parameters('column'), 'column') * 0.5
        return (y.permute(0, 3, 1, 2) if self.channel_first else y).to(x.dtype)

    def skip_term(self, x):
        """(B, D, H, W) -> the cascade's direct terms only, merged: stage 2's D times stage 1's
        D times x per orientation (the stage-2 conv left out too), (sum over orientations) / 2.
        Each is elementwise, so no flips are needed."""
        channels = x.shape[1]
        gains = (self.row_Ds.float() * self.column_Ds.float()).view(NUM_ORIENTATIONS, channels)
        y = x.float() * (0.5 * gains.sum(0)).view(channels, 1, 1)
        y = y.to(x.dtype)
        return y if self.channel_first else y.permute(0, 2, 3, 1)
