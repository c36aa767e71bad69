"""ABMIL: a bag-of-instances aggregator (gated attention pooling over the patches, Ilse et al.)."""
from torch import nn

from .common import GatedAttentionPool, input_projection, projection_width


class ABMIL(nn.Module):
    """features (n, d) -> slide embedding (dim,), with per-patch attention. Positions unused: it
    is the baseline that cannot see the arrangement of the patches."""

    def __init__(self, in_features=None, dim=512, attention_dim=256, dropout=0.25):
        super().__init__()
        self.projection = nn.Sequential(input_projection(in_features, dim), nn.ReLU(),
                                        nn.Dropout(dropout))
        self.pool = GatedAttentionPool(dim, attention_dim, dropout)
        self.out_features = dim

    @property
    def in_features(self):
        return projection_width(self.projection[0])

    def forward(self, features, positions):
        embedding, attention = self.pool(self.projection(features))
        return embedding, dict(attention=attention)
