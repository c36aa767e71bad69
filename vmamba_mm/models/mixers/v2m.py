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

from ..layers import channel_dim, inverse_softplus, linear_layer, norm_layer
from .base import MIXERS, TokenMixer, depthwise_conv

# The four corners a 2D scan can start from, as (flip rows, flip columns) of the pixel grid:
# top-left, top-right, bottom-left, bottom-right.
ORIENTATION_FLIPS = ((False, False), (False, True), (True, False), (True, True))
NUM_ORIENTATIONS = len(ORIENTATION_FLIPS)


def orient(x, orientation):
    """(..., H, W) in pixel order -> the grid as ``orientation``'s scan sees it (flips are their
    own inverse, so this also maps back)."""
    flip_rows, flip_columns = ORIENTATION_FLIPS[orientation]
    dims = [d for d, flip in ((-2, flip_rows), (-1, flip_columns)) if flip]
    return x.flip(dims) if dims else x


def _reversed_where(t, reverse, dim=2, axis=-1):
    """``t`` (any strides) copied contiguous in one pass, its axis ``axis`` reversed at the
    indices of ``dim`` where ``reverse`` (one bool per orientation) is True. (One gather beats
    a copy plus ``flip`` of the reversed half: torch's flip of a strided view is slow.)"""
    length = t.shape[axis]
    forward = torch.arange(length, device=t.device)
    order = torch.stack([forward.flip(0) if flipped else forward for flipped in reverse])
    shape = [1] * t.dim()
    shape[dim], shape[axis] = len(reverse), length
    if dim > axis % t.dim():
        order = order.t().contiguous()
    return torch.gather(t, axis, order.view(shape).expand(t.shape))


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
    Scans run through the dispatch's ``selective_scan`` with the rows (stage 1) or columns
    (stage 2) in the batch dimension and the four orientations as four groups of channels.

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
        super().__init__('selective_scan', channel_first=channel_first,
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

    def stage_scan(self, stage, u, delta, B, C):
        """One stage's selective scan over (batch', 4 * D, L) sequences, float32 out."""
        return self.scan_kernel(u, delta, -torch.exp(getattr(self, f'{stage}_A_logs').float()),
                                B, C, D=getattr(self, f'{stage}_Ds').float(),
                                delta_bias=getattr(self, f'{stage}_dt_projs_bias').reshape(
                                    -1).float(), delta_softplus=True, out_dtype=torch.float32)

    def stage_inputs(self, stage, projected, to_sequences):
        """delta before its bias (batch', 4, D, L) and the input-dependent B or C
        (batch', 4, N, L) of ``stage`` from its projection ``projected`` (B, 4, rank + N, H, W),
        laid out as sequences by ``to_sequences``. The low-rank part is moved, not delta."""
        dt_low_rank = to_sequences(projected[:, :, :self.dt_rank])
        state_input = to_sequences(projected[:, :, self.dt_rank:])
        dt_proj = getattr(self, f'{stage}_dt_projs_weight').to(projected.dtype)
        return torch.matmul(dt_proj, dt_low_rank), state_input

    def scan(self, x):
        """(B, D, H, W) -> the merged cascade of the four orientations in this module's layout.

        Everything per pixel (projections, the stage-2 conv with its kernels flipped, the merge)
        runs in pixel order; an orientation shows only in the direction its rows and columns are
        scanned: its sequences are read reversed (``_reversed_where``) where it flips that axis.
        """
        batch, dim, height, width = x.shape
        flips_columns = [flip_columns for _, flip_columns in ORIENTATION_FLIPS]
        flips_rows = [flip_rows for flip_rows, _ in ORIENTATION_FLIPS]

        def as_rows(t):  # (B, 4, X, H, W) -> (B, H, 4, X, W), W reversed where flipped
            return _reversed_where(t.permute(0, 3, 1, 2, 4), flips_columns)

        def as_columns(t):  # (B, 4, X, H, W) -> (B, W, 4, X, H), H reversed where flipped
            return _reversed_where(t.permute(0, 4, 1, 2, 3), flips_rows)

        # Stage 1: every row a sequence, (B * H, 4 * D, W); C is ones. All orientations read x.
        x_proj = self.row_x_proj_weight.flatten(0, 1).to(x.dtype)
        projected = torch.matmul(x_proj, x.flatten(2)).view(batch, NUM_ORIENTATIONS, -1, height,
                                                              width)
        delta, B = self.stage_inputs('row', projected, as_rows)
        u = as_rows(x.unsqueeze(1).expand(batch, NUM_ORIENTATIONS, dim, height, width))
        rows = batch * height
        B = B.reshape(rows, NUM_ORIENTATIONS, self.state_size, width)
        row_out = self.stage_scan('row', u.view(rows, -1, width), delta.reshape(rows, -1, width),
                                  B, torch.ones_like(B))
        # Back to pixel order, channels-last (B, H, W, 4, D): the layout the CPU conv reads.
        row_out = row_out.to(x.dtype).view(batch, height, NUM_ORIENTATIONS, dim, width)
        row_out = _reversed_where(row_out.permute(0, 1, 4, 2, 3), flips_columns, dim=3, axis=2)

        # Stage 2: its own conv, then every column a sequence, (B * W, 4 * D, H); B is ones.
        v = self.conv_and_act(row_out.view(batch, height, width, -1).permute(0, 3, 1, 2),
                              *self.pixel_frame_column_conv())
        # (B, 4 * D, H, W) -> (B, 4, D, H, W) views; in channels-last memory when the conv
        # kept that layout. The projection reads it in place: (4, pixels, D) @ (4, D, rank + N).
        v = v.unflatten(1, (NUM_ORIENTATIONS, dim))
        pixels = v.permute(1, 0, 3, 4, 2).reshape(NUM_ORIENTATIONS, -1, dim)
        projected = torch.matmul(pixels, self.column_x_proj_weight.to(x.dtype).transpose(1, 2))
        projected = projected.view(NUM_ORIENTATIONS, batch, height, width, -1).permute(
            1, 0, 4, 2, 3)
        delta, C = self.stage_inputs('column', projected, as_columns)
        columns = batch * width
        C = C.reshape(columns, NUM_ORIENTATIONS, self.state_size, height)
        u = as_columns(v)
        column_out = self.stage_scan('column', u.view(columns, -1, height),
                                     delta.reshape(columns, -1, height), torch.ones_like(C), C)
        return self._merged(column_out.view(batch, width, NUM_ORIENTATIONS, dim, height),
                            x.dtype)

    def _merged(self, column_out, dtype):
        """(B, W, 4, D, H) column-scan results -> pixel order, merged as the class docstring
        says, ``(forward pair + backward pair) / 2`` = the four summed and halved, in this
        module's layout and ``dtype``. Summed by column direction first, so that one reversal
        turns back the two orientations that scan columns bottom-up."""
        # ORIENTATION_FLIPS lists the two top-down starts first. Both sums are written
        # straight into the output layout, so out_norm reads it contiguous.
        top_down = column_out[:, :, 0] + column_out[:, :, 1]
        bottom_up = (column_out[:, :, 2] + column_out[:, :, 3]).flip(-1)
        to_layout = (0, 2, 3, 1) if self.channel_first else (0, 3, 1, 2)  # from (B, W, D, H)
        top_down, bottom_up = top_down.permute(to_layout), bottom_up.permute(to_layout)
        if torch.is_grad_enabled() and column_out.requires_grad:  # out= has no autograd
            return ((top_down + bottom_up) * 0.5).to(dtype)
        y = torch.add(top_down, bottom_up, out=torch.empty(top_down.shape,
                                                            dtype=top_down.dtype,
                                                            device=top_down.device))
        return y.mul_(0.5).to(dtype)

    def skip_term(self, x):
        """(B, D, H, W) -> the cascade's direct terms only, merged: stage 2's D times stage 1's
        D times x per orientation (the stage-2 conv left out too), (sum over orientations) / 2.
        Each is elementwise, so no flips are needed."""
        channels = x.shape[1]
        gains = (self.row_Ds.float() * self.column_Ds.float()).view(NUM_ORIENTATIONS, channels)
        y = x.float() * (0.5 * gains.sum(0)).view(channels, 1, 1)
        y = y.to(x.dtype)
        return y if self.channel_first else y.permute(0, 2, 3, 1)
