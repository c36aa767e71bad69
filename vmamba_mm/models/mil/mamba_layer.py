"""One Mamba layer over a sequence (1D selective scan) or a grid (2DMamba's 2D selective scan).

in-projection to (x, z); a depthwise convolution on x (causal, width 4, along the sequence; 3x3
over the grid); SiLU; the selective scan with input-dependent delta, B, C; gate by SiLU(z);
out-projection; residual and LayerNorm. The scan runs on the dispatch's automatic backend unless
``backend`` names one.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import inverse_softplus


class MambaLayer(nn.Module):

    def __init__(self, dim, d_state=16, expand=2, grid=False, conv_width=4, dt_min=1e-3,
                 dt_max=0.1, backend=None):
        super().__init__()
        inner = expand * dim
        self.grid, self.d_state, self.backend = grid, d_state, backend
        self.dt_rank = math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        if grid:
            self.conv = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        else:
            self.conv = nn.Conv1d(inner, inner, conv_width, padding=conv_width - 1, groups=inner)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner, bias=False)
        # Mamba's initialisation: steps log-uniform in [dt_min, dt_max], A = -(1..N) per channel.
        steps = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min))
                          + math.log(dt_min))
        self.delta_bias = nn.Parameter(inverse_softplus(steps))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1).float()).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def scan(self, u, delta, B, C, height=None, width=None):
        """The selective scan of (1, inner, L) inputs; on the grid when ``height`` is given."""
        A = -torch.exp(self.A_log.float())
        if self.grid:
            from vmamba_kernels import selective_scan_2d
            return selective_scan_2d(u, delta, A, B, C, self.D.float(), self.delta_bias.float(),
                                     delta_softplus=True, height=height, width=width,
                                     backend=self.backend)
        from vmamba_kernels import selective_scan
        return selective_scan(u, delta, A, B, C, self.D.float(), self.delta_bias.float(),
                              delta_softplus=True, backend=self.backend)

    def forward(self, tokens, height=None, width=None):
        """tokens (L, dim), in raster order on a ``height`` x ``width`` grid for a 2D layer ->
        (output (L, dim), scan output (L, inner))."""
        length = tokens.shape[0]
        x, z = self.in_proj(tokens).chunk(2, dim=-1)
        if self.grid:
            x = x.t().reshape(1, -1, height, width)
            x = self.conv(x).flatten(2)
        else:
            x = self.conv(x.t().unsqueeze(0))[..., :length]
        x = F.silu(x)  # (1, inner, L)
        dt, B, C = self.x_proj(x[0].t()).split([self.dt_rank, self.d_state, self.d_state], -1)
        delta = self.dt_proj(dt).t().unsqueeze(0)
        y = self.scan(x.contiguous(), delta.contiguous(), B.t().unsqueeze(0).contiguous(),
                      C.t().unsqueeze(0).contiguous(), height, width)
        scanned = y[0].t()
        out = self.out_proj(scanned * F.silu(z))
        return self.norm(tokens + out), scanned
