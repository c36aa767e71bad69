"""A residual add followed by a LayerNorm, as one operation (a VSS block's ``x + branch`` and the
norm before its MLP).

``add_layer_norm(x, residual, weight, bias, eps, channel_first)`` returns ``(x + residual,
LayerNorm(x + residual))``, the norm over the channels: dim 1 of a (B, C, H, W) map when
``channel_first``, else the last dim. Both come back in the sum's dtype (the statistics are taken
in float32). Backends: tensor ops (every backend name but 'triton', any device; the reference) and
a Triton kernel that reads both inputs once and writes both outputs once, forward and backward
(``triton.py``).
"""
import os

from .. import triton_common
from ..dispatch import register, run
from . import flops, triton  # noqa: F401  (flops: the FLOP counter's rule)
from .reference import add_layer_norm_reference

OPERATION = 'add_layer_norm'
for _name in ('reference', 'torch', 'cpp', 'cuda'):
    register(OPERATION, _name, add_layer_norm_reference, devices=('cpu', 'cuda'),
             priority=0 if _name == 'torch' else None, description='tensor ops')
register(OPERATION, 'triton', triton.add_layer_norm_triton,
         devices=('cuda', 'cpu') if os.environ.get('TRITON_INTERPRET') == '1' else ('cuda', ),
         priority=1, auto_devices=('cuda', ), unavailable_reason=triton_common.unavailable_reason,
         description='Triton kernel, add and norm in one pass')


def check_add_layer_norm_inputs(x, residual, weight, bias, channel_first):
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


def add_layer_norm(x, residual, weight, bias, eps=1e-5, channel_first=False, backend=None):
    """(x + residual, LayerNorm(x + residual) over the channels)."""
    check_add_layer_norm_inputs(x, residual, weight, bias, channel_first)
    return run(OPERATION, x.device.type, backend, x, residual, weight, bias, eps, channel_first)
