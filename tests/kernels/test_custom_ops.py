"""The compiled CPU kernels as torch.library operators: opcheck (schema, fake tensors, autograd
registration, AOT dispatch) and gradients against the sequential reference."""
import pytest
import torch

from tests.kernels.scan_inputs import fused_inputs, make_inputs
from vmamba_kernels import available_backends, route_pixels
from vmamba_kernels.cross_selective_scan.composite import fused_scan_reference
from vmamba_kernels.selective_scan.reference import selective_scan_reference

pytestmark = pytest.mark.skipif('cpp' not in available_backends(),
                                reason='the C++ CPU kernel could not be built here')


def leaves(*tensors):
    return [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]


@pytest.mark.parametrize('softplus', [True, False])
@pytest.mark.parametrize('shape', [(2, 8, 37, 4, 2), (1, 4, 20, 1, 4)])
def test_selective_scan_op(shape, softplus):
    from vmamba_kernels.selective_scan.cpp import selective_scan_cpp
    inputs = make_inputs(*shape)
    if not softplus:
        inputs['delta'] = inputs['delta'].abs() + 0.01
    args = leaves(*(inputs[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')))
    torch.library.opcheck(selective_scan_cpp, (*args, softplus))
    torch.library.opcheck(selective_scan_cpp, (*args[:5], None, None, softplus))


@pytest.mark.parametrize('reverse', [False, True])
def test_linear_recurrence_op(reverse):
    from vmamba_kernels.selective_scan.cpp import linear_recurrence_cpp
    gen = torch.Generator().manual_seed(0)
    decay, drive = leaves(torch.rand(6, 19, generator=gen), torch.randn(6, 19, generator=gen))
    torch.library.opcheck(linear_recurrence_cpp, (decay, drive, reverse))
    # Against the recurrence written out, in value and gradient.
    out = linear_recurrence_cpp(decay, drive, reverse)
    h, expected = torch.zeros(6), [None] * 19
    for t in (range(18, -1, -1) if reverse else range(19)):
        h = decay[:, t] * h + drive[:, t]
        expected[t] = h
    expected = torch.stack(expected, -1)
    torch.testing.assert_close(out, expected)
    grad = torch.randn(6, 19, generator=gen)
    for got, want in zip(torch.autograd.grad(out, (decay, drive), grad),
                         torch.autograd.grad(expected, (decay, drive), grad)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('order', ['cross', 'bidirectional', 'unidirectional'])
@pytest.mark.parametrize('height, width', [(3, 5), (1, 6)])
def test_fused_cross_selective_scan_op(order, height, width):
    from vmamba_kernels.cross_selective_scan.cpp import cross_selective_scan_cpp
    args = leaves(*fused_inputs(channels=6, height=height, width=width, rank=2, state=3,
                                seed=height))
    gen = torch.Generator().manual_seed(height)
    pixels = route_pixels(order, height, width)
    torch.library.opcheck(cross_selective_scan_cpp, (*args, pixels))

    def reference_scan(u, delta, A, B, C, D, delta_bias, softplus):
        return selective_scan_reference(u, delta, A, B, C, D=D, delta_bias=delta_bias,
                                        delta_softplus=softplus)

    out = cross_selective_scan_cpp(*args, pixels)
    expected = fused_scan_reference(*args, pixels, reference_scan)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    grad = torch.randn(out.shape, generator=gen)
    for got, want in zip(torch.autograd.grad(out, args, grad),
                         torch.autograd.grad(expected, args, grad)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
