"""The residual add + LayerNorm in tensor ops: the test oracle (and the ``torch`` backend)."""
import torch.nn.functional as F


def add_layer_norm_reference(x, residual, weight, bias, eps, channel_first):
    """(x + residual, LayerNorm of it over the channels), both in the sum's dtype."""
    total = x + residual
    if channel_first:
        normed = F.layer_norm(total.movedim(1, -1), weight.shape, weight, bias, eps).movedim(-1, 1)
    else:
        normed = F.layer_norm(total, weight.shape, weight, bias, eps)
    return total, normed.to(total.dtype)
