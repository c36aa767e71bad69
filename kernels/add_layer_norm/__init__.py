"""A residual add followed by a LayerNorm, as one operation (a VSS block's ``x + branch`` and the
norm before its MLP).

``add_layer_norm(x, residual, weight, bias, eps, channel_first)`` returns ``(x + residual,
LayerNorm(x + residual))``, the norm over the channels: dim 1 of a (B, C, H, W) map when
``channel_first``, else the last dim. Both come back in the sum's dtype (the statistics are taken
in float32). Backends: ``reference`` and ``torch`` (tensor ops, any device) and ``triton``, a
kernel that reads both inputs once and writes both outputs once, forward and backward. Other
backend names run ``torch`` (the dispatch's rule for names an operation lacks).
"""
from ..common import triton_common
from ..dispatch import register, register_input_check, run
from . import flops, reference, triton  # noqa: F401  (flops: the FLOP counter's rule)
from . import torch as torch_backend

__all__ = ['add_layer_norm']

OPERATION = 'add_layer_norm'
register(OPERATION, 'reference', reference.add_layer_norm_reference, devices=('cpu', 'cuda'),
         description='tensor ops')
register(OPERATION, 'torch', torch_backend.add_layer_norm_torch, devices=('cpu', 'cuda'),
         priority=0, description='tensor ops')
register(OPERATION, 'triton', triton.add_layer_norm_triton, devices=triton_common.triton_devices(),
         priority=1, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel, add and norm in one pass')


def check_inputs(x, residual, weight, bias, eps=1e-5, channel_first=False):
    """The two inputs against each other and the norm's parameters; errors name the input."""
    if x.shape != residual.shape:
        raise ValueError(f'add_layer_norm: x has shape {tuple(x.shape)} but residual has '
                         f'{tuple(residual.shape)}; they must match.')
    if channel_first and x.dim() != 4:
        raise ValueError(f'add_layer_norm with channel_first expects (B, C, H, W) maps, got '
                         f'shape {tuple(x.shape)}.')
    channels = x.shape[1] if channel_first else x.shape[-1]
    for name, t in (('weight', weight), ('bias', bias)):
        if tuple(t.shape) != (channels, ):
            raise ValueError(f'add_layer_norm: {name} has shape {tuple(t.shape)}, expected '
                             f'({channels},) for {channels} channels.')


register_input_check(OPERATION, check_inputs)


def add_layer_norm(x, residual, weight, bias, eps=1e-5, channel_first=False, backend=None):
    """(x + residual, LayerNorm(x + residual) over the channels)."""
    return run(OPERATION, x.device.type, backend, x, residual, weight, bias, eps, channel_first)
