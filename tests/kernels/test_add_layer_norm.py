"""add_layer_norm on the CPU: its reference against the two steps it replaces, named errors, and
the Triton operator's FLOP rule (the kernel itself: ``test_triton_interpret.py``)."""
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

import vmamba_kernels


@pytest.mark.parametrize('channel_first', [False, True], ids=['BHWC', 'BCHW'])
def test_reference_is_the_add_then_the_norm_layer(channel_first):
    gen = torch.Generator().manual_seed(0)
    x, residual = (torch.randn(2, 6, 3, 5, generator=gen) for _ in range(2))
    channels = 6 if channel_first else 5
    norm = nn.LayerNorm(channels)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    total, normed = vmamba_kernels.add_layer_norm(x, residual, norm.weight, norm.bias, norm.eps,
                                                  channel_first, backend='reference')
    assert torch.equal(total, x + residual)
    by_hand = norm((x + residual).movedim(1, -1)).movedim(-1, 1) if channel_first else \
        norm(x + residual)
    torch.testing.assert_close(normed, by_hand)


@pytest.mark.parametrize('residual_shape, weight_shape, channel_first, message', [
    ((2, 4, 5), (5, ), False, 'residual has'),
    ((2, 3, 5), (4, ), False, 'weight has shape (4,), expected (5,)'),
    ((2, 3, 5), (3, ), True, 'expects (B, C, H, W) maps'),
])
def test_bad_inputs_are_named(residual_shape, weight_shape, channel_first, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        vmamba_kernels.add_layer_norm(torch.zeros(2, 3, 5), torch.zeros(residual_shape),
                                      torch.ones(weight_shape), torch.zeros(weight_shape),
                                      channel_first=channel_first)


def test_the_fused_operator_counts_a_norm():
    # 5 multiply-adds per element (the official norm rule), the add nothing: 2 * 5 * 2*3*4*8.
    op = torch.ops.vmamba.add_layer_norm_triton
    meta = dict(device='meta')
    with FlopCounterMode(display=False) as counter:
        op(torch.empty(2, 3, 4, 8, **meta), torch.empty(2, 3, 4, 8, **meta),
           torch.empty(8, **meta), torch.empty(8, **meta), 1e-5, False)
    assert counter.get_total_flops() == 2 * 5 * 2 * 3 * 4 * 8
    assert torch.ops.vmamba.add_layer_norm_triton_backward not in flop_registry
