"""The fused depthwise conv's cost for ``torch.utils.flop_counter``: the conv's, as torch counts
a convolution (two FLOPs per multiply-add; bias and activation not counted), so a model counts
the same whichever backend ran its conv."""
import torch
from torch.utils.flop_counter import register_flop_formula

from . import cpp  # noqa: F401  (defines the operator)


@register_flop_formula(torch.ops.vmamba.depthwise_conv_silu_cpp)
def _depthwise_conv_flops(x, weight, bias, *rest, out_shape=None, **kwargs):
    batch, height, width, channels = x
    return 2 * batch * height * width * channels * weight[2] * weight[3]
