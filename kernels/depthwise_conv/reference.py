"""SS2D's depthwise conv and SiLU in tensor ops: the operation's oracle and its tensor-op backend
(any device, autograd, export)."""
import torch.nn.functional as F


def depthwise_conv_silu_reference(x, weight, bias=None):
    """SiLU(depthwise conv of x with 'same' zero padding, stride 1), in x's layout."""
    return F.silu(F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1]))
