"""2DMambaMIL: patch features projected to 128 with ReLU, scattered into the slide's dense grid
(cells without tissue take a learnable pad token), one 2D Mamba layer (2DMamba's 2D selective
scan, d_state 16), attention pooling over the tissue cells. The release's sizes for 1024-d
features; the input width comes from the data."""
import torch
from torch import nn

from .common import PooledAggregator
from .mamba_layer import MambaLayer


class TwoDMambaMIL(PooledAggregator):

    def __init__(self, in_features=None, dim=128, d_state=16, dropout=0.25, backend=None):
        super().__init__(in_features, dim, dim, dropout, layers=lambda: dict(
            pad_token=nn.Parameter(torch.zeros(dim)),
            layer=MambaLayer(dim, d_state=d_state, grid=True, backend=backend)))

    def forward(self, features, positions):
        """features (n, d), positions (n, 2) (row, col) -> embedding, {attention (n,), scan_norm
        (n,)} in the patches' order."""
        patches = self.projection(features)
        height, width = (int(extent) + 1 for extent in positions.max(dim=0).values)
        cells = positions[:, 0] * width + positions[:, 1]
        grid = self.pad_token.expand(height * width, -1).index_put((cells, ), patches)
        tokens, scanned = self.layer(grid, height, width)
        embedding, attention = self.pool(tokens[cells])
        return embedding, dict(attention=attention, scan_norm=scanned[cells].norm(dim=-1))
