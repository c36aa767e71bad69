"""What the MIL aggregators share: the input projection whose width comes from the data, gated
attention pooling, and ``PooledAggregator``, the base that holds both."""
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


class PooledAggregator(nn.Module):
    """The frame of an aggregator: the input projection to ``dim`` (ReLU, dropout; lazy with
    ``in_features=None``), the subclass's own layers, gated attention pooling; ``out_features``
    is ``dim`` and ``in_features`` the projection's width (None until a lazy one sees a slide).

    ``layers`` returns the subclass's modules and parameters by attribute name. They are made
    between the projection and the pool, the order each aggregator made them in when it built
    its own, so that a seed gives the same initial weights (and the state dict the same keys).
    """

    def __init__(self, in_features, dim, attention_dim, dropout, layers=dict):
        super().__init__()
        self.projection = nn.Sequential(input_projection(in_features, dim), nn.ReLU(),
                                        nn.Dropout(dropout))
        for name, part in layers().items():
            setattr(self, name, part)
        self.pool = GatedAttentionPool(dim, attention_dim, dropout)
        self.out_features = dim

    @property
    def in_features(self):
        return projection_width(self.projection[0])
