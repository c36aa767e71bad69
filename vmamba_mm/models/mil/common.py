"""Pieces the MIL aggregators share: the input projection whose width comes from the data, and
gated attention pooling."""
import torch
from torch import nn


def input_projection(in_features, out_features):
    """Linear from the feature width to ``out_features``; with ``in_features=None`` a lazy layer
    that takes its width from the first slide (one config for 192-, 768- or 1024-d features)."""
    if in_features is None:
        return nn.LazyLinear(out_features)
    return nn.Linear(in_features, out_features)


def projection_width(projection):
    """The input width of an input projection, or None while a lazy one has seen no slide."""
    if isinstance(projection, nn.modules.lazy.LazyModuleMixin) and \
            projection.has_uninitialized_params():
        return None
    return projection.in_features


class GatedAttentionPool(nn.Module):
    """Gated attention (Ilse et al. 2018): score = w . (tanh(V h) * sigmoid(U h)), softmax over the
    instances; returns the weighted sum and the weights."""

    def __init__(self, dim, hidden, dropout=0.0):
        super().__init__()
        self.values = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.gates = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, instances):
        """instances (n, dim) -> (embedding (dim,), attention (n,) summing to 1)."""
        scores = self.score(self.values(instances) * self.gates(instances)).squeeze(-1)
        attention = torch.softmax(scores, dim=0)
        return attention @ instances, attention
