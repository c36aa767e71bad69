"""MambaMIL (1D): the patches in raster order (row, then column) through one Mamba layer with
the 1D selective scan, then gated attention pooling."""
import torch

from .common import PooledAggregator
from .mamba_layer import MambaLayer


def raster_order(positions):
    """The permutation that sorts patches by (row, col)."""
    width = int(positions[:, 1].max()) + 1
    return torch.argsort(positions[:, 0] * width + positions[:, 1])


class MambaMIL(PooledAggregator):

    def __init__(self, in_features=None, dim=128, d_state=16, dropout=0.25, backend=None):
        super().__init__(in_features, dim, dim, dropout, layers=lambda: dict(
            layer=MambaLayer(dim, d_state=d_state, grid=False, backend=backend)))

    def forward(self, features, positions):
        order = raster_order(positions)
        tokens, _ = self.layer(self.projection(features[order]))
        embedding, attention_in_order = self.pool(tokens)
        attention = torch.empty_like(attention_in_order).scatter_(0, order, attention_in_order)
        return embedding, dict(attention=attention)
