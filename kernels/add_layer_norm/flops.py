"""The fused add + LayerNorm's cost for ``torch.utils.flop_counter``: the LayerNorm's, 5
multiply-adds per element as the official tables count a norm (the add, element-wise, counts 0),
in torch's two FLOPs per multiply-add."""
import torch
from torch.utils.flop_counter import register_flop_formula

from . import triton  # noqa: F401  (defines the operator)

MACS_PER_ELEMENT = 5


@register_flop_formula(torch.ops.vmamba.add_layer_norm_triton)
def _add_layer_norm_flops(x, *rest, out_shape=None, **kwargs):
    elements = 1
    for size in x:
        elements *= size
    return 2 * MACS_PER_ELEMENT * elements
