"""ABMIL: a bag-of-instances aggregator (gated attention pooling over the patches, Ilse et al.)."""
from .common import PooledAggregator


class ABMIL(PooledAggregator):
    """features (n, d) -> slide embedding (dim,), with per-patch attention. Positions unused: it
    is the baseline that cannot see the arrangement of the patches."""

    def __init__(self, in_features=None, dim=512, attention_dim=256, dropout=0.25):
        super().__init__(in_features, dim, attention_dim, dropout)

    def forward(self, features, positions):
        embedding, attention = self.pool(self.projection(features))
        return embedding, dict(attention=attention)
