"""SS2D's depthwise conv and SiLU, as one operation.

``depthwise_conv_silu(x, weight, bias)`` is ``SiLU(conv2d(x, weight, bias, padding=k // 2,
groups=C))`` for a (B, C, H, W) map and a (C, 1, k, k) kernel with odd k. Backends:
``reference`` and ``torch`` (tensor ops, any device) and ``cpp``, a C++ kernel that reads the map
channels-last and does both in one pass (CPU, inference). Other backend names run ``torch`` (the
dispatch's rule for names an operation lacks).
"""
from ..dispatch import register, register_input_check, run
from . import cpp, flops, reference  # noqa: F401  (flops: the FLOP counter's rule)
from . import torch as torch_backend

__all__ = ['depthwise_conv_silu']

OPERATION = 'depthwise_conv_silu'
register(OPERATION, 'reference', reference.depthwise_conv_silu_reference,
         devices=('cpu', 'cuda'), description='tensor ops')
register(OPERATION, 'torch', torch_backend.depthwise_conv_silu_torch, devices=('cpu', 'cuda'),
         priority=0, description='tensor ops')
register(OPERATION, 'cpp', cpp.depthwise_conv_silu_compiled, devices=('cpu', ), priority=1,
         unavailable_reason=cpp.unavailable_reason,
         description='C++ kernel, conv and SiLU in one pass, without autograd')


def check_inputs(x, weight, bias=None):
    """The map against its kernel; errors name the input and the shape expected."""
    if x.dim() != 4:
        raise ValueError(f'depthwise_conv_silu expects a (B, C, H, W) map, got shape '
                         f'{tuple(x.shape)}.')
    channels = x.shape[1]
    if weight.dim() != 4 or tuple(weight.shape[:2]) != (channels, 1) or \
            weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f'depthwise_conv_silu: weight has shape {tuple(weight.shape)}, '
                         f'expected ({channels}, 1, k, k) with odd k for {channels} channels.')
    if bias is not None and tuple(bias.shape) != (channels, ):
        raise ValueError(f'depthwise_conv_silu: bias has shape {tuple(bias.shape)}, expected '
                         f'({channels},).')


register_input_check(OPERATION, check_inputs)


def depthwise_conv_silu(x, weight, bias=None, backend=None):
    """SiLU of the depthwise conv of a (B, C, H, W) map ('same' zero padding, stride 1)."""
    return run(OPERATION, x.device.type, backend, x, weight, bias)
