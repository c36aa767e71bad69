"""The compiled CPU kernels as torch.library operators: opcheck (schema, fake tensors, autograd
registration, AOT dispatch) and gradients against the sequential reference."""
import pytest
import torch

from tests.kernels.scan_inputs import make_inputs
from vmamba_kernels import available_backends, route_pixels
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
    from vmamba_kernels.selective_scan.cpp import selective_scan_cpp_backward
    grad_y = torch.randn(inputs['u'].shape, generator=torch.Generator().manual_seed(1))
    plain = [t.detach() for t in args]
    torch.library.opcheck(selective_scan_cpp_backward, (*plain, grad_y, softplus))


@pytest.mark.parametrize('reverse', [False, True])
def test_linear_recurrence_op(reverse):
    from tests.kernels.oracles import linear_recurrence_cpp
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


def pixel_major_operator_inputs(channels, height, width, rank, state, seed, batch=2):
    """(x, delta, projected, A, D, delta_bias) of ``vmamba::cross_selective_scan_cpp``, made by
    the backend's own projections of a random map (x channels-last in memory, as a conv gives)."""
    from vmamba_kernels.cross_selective_scan.cpp import pixel_major_inputs
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, height, width, channels, generator=gen).permute(0, 3, 1, 2)
    x_proj_weight = torch.randn(4, rank + 2 * state, channels, generator=gen) * 0.5
    dt_weight = torch.randn(4, channels, rank, generator=gen) * 0.5
    pixel_major, delta, projected = pixel_major_inputs(x, x_proj_weight, dt_weight)
    return [pixel_major, delta, projected, -torch.rand(4 * channels, state, generator=gen) - 0.1,
            torch.randn(4 * channels, generator=gen), torch.randn(4 * channels, generator=gen)]


# 20 channels: a block of 16 in vector registers and 4 in the plain C++ path; 5: the plain path
# alone. Every order, on a map and on a single row.
@pytest.mark.parametrize('order, height, width, channels, state', [
    ('cross', 3, 5, 20, 1), ('cross', 1, 6, 20, 3), ('bidirectional', 3, 5, 20, 3),
    ('bidirectional', 1, 6, 5, 2), ('unidirectional', 3, 5, 5, 2), ('unidirectional', 1, 6, 20, 1)])
def test_fused_cross_selective_scan_op(order, height, width, channels, state):
    from tests.kernels.oracles import pixel_major_scan_reference
    from vmamba_kernels.cross_selective_scan.cpp import (cross_selective_scan_cpp,
                                                         cross_selective_scan_cpp_backward)
    args = leaves(*pixel_major_operator_inputs(channels, height, width, rank=2, state=state,
                                               seed=height))
    gen = torch.Generator().manual_seed(height)
    pixels = route_pixels(order, height, width)
    torch.library.opcheck(cross_selective_scan_cpp, (*args, pixels))

    def reference_scan(u, delta, A, B, C, D, delta_bias, softplus):
        return selective_scan_reference(u, delta, A, B, C, D=D, delta_bias=delta_bias,
                                        delta_softplus=softplus)

    out = cross_selective_scan_cpp(*args, pixels)
    expected = pixel_major_scan_reference(*args, pixels, reference_scan)
    assert out.shape == (2, height, width, channels)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    grad = torch.randn(out.shape, generator=gen)
    # The gradients come from the C++ backward (vmamba::cross_selective_scan_cpp_backward).
    for got, want in zip(torch.autograd.grad(out, args, grad),
                         torch.autograd.grad(expected, args, grad)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.library.opcheck(cross_selective_scan_cpp_backward,
                          (*[t.detach() for t in args], pixels, grad))


def test_fused_cross_selective_scan_backward_is_the_same_at_any_thread_count():
    # One pass per image: the B and C gradients of a pixel are summed over channels by one
    # thread in one order, whatever the number of threads.
    from vmamba_kernels.cross_selective_scan.cpp import cross_selective_scan_cpp_backward
    args = pixel_major_operator_inputs(20, 4, 6, rank=2, state=1, seed=0, batch=3)
    pixels = route_pixels('cross', 4, 6)
    grad = torch.randn(args[0].shape, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(cross_selective_scan_cpp_backward(*args, pixels, grad))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_fused_cross_selective_scan_softplus_over_its_whole_range():
    # The kernel's own exp, log and softplus (vector polynomials) against float64 torch, where
    # softplus is nearly linear, curved, and nearly e^s: a 1x2 map, one channel block, one state.
    from vmamba_kernels.cross_selective_scan.cpp import cross_selective_scan_cpp
    s = torch.linspace(-30, 30, 16 * 7).view(7, 16)
    for row in s:
        x = torch.ones(1, 1, 1, 16)
        delta = torch.zeros(4, 1, 1, 16)
        delta[0] = row
        projected = torch.tensor([0., 1., 0.]).repeat(1, 1, 4, 1)  # B = 1, C = 0 on every route
        projected[0, 0, 0, 1:] = 1  # route 0 reads C = 1
        A = -torch.ones(64, 1)
        y = cross_selective_scan_cpp(x, delta, projected, A, None, None,
                                     route_pixels('unidirectional', 1, 1))
        softplus = torch.nn.functional.softplus(row.double())
        # h = softplus(s) * u * B after one step from h = 0; y = C * h.
        torch.testing.assert_close(y.view(16).double(), softplus, rtol=4e-7, atol=1e-30)

# 20 channels: two vectors of 8 and 4 in the plain C++ path; 44: one block of 32 (four vectors),
# one vector and 4 plain; 1x1 and 2x3 maps: every tap of the 3x3 and 5x5 kernels falls off an
# edge somewhere.
@pytest.mark.parametrize('channels, size, with_bias, height, width',
                         [(20, 3, True, 4, 6), (20, 3, True, 1, 1), (5, 5, False, 2, 3),
                          (44, 3, True, 5, 7), (44, 5, False, 2, 3)])
def test_depthwise_conv_silu_op(channels, size, with_bias, height, width):
    from vmamba_kernels.depthwise_conv.cpp import depthwise_conv_silu_cpp
    from vmamba_kernels.depthwise_conv.reference import depthwise_conv_silu_reference
    gen = torch.Generator().manual_seed(height * width)
    x, weight, bias = leaves(torch.randn(2, height, width, channels, generator=gen),
                             torch.randn(channels, 1, size, size, generator=gen),
                             torch.randn(channels, generator=gen) if with_bias else None)
    torch.library.opcheck(depthwise_conv_silu_cpp, (x, weight, bias))
    out = depthwise_conv_silu_cpp(x, weight, bias)
    expected = depthwise_conv_silu_reference(x.permute(0, 3, 1, 2), weight,
                                             bias).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grad = torch.randn(out.shape, generator=gen)
    args = [t for t in (x, weight, bias) if t is not None]
    for got, want in zip(torch.autograd.grad(out, args, grad),
                         torch.autograd.grad(expected, args, grad)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_depthwise_conv_silu_counts_as_the_conv():
    from torch.utils.flop_counter import FlopCounterMode

    import vmamba_kernels
    x, weight, bias = torch.randn(1, 7, 5, 6), torch.randn(7, 1, 3, 3), torch.randn(7)
    counts = []
    for backend in ('cpp', 'torch'):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            vmamba_kernels.depthwise_conv_silu(x, weight, bias, backend=backend)
        counts.append(counter.get_total_flops())
    # 5 x 6 pixels, 7 channels, 9 taps: 1890 multiply-adds, two FLOPs each.
    assert counts == [2 * 1890, 2 * 1890]


def test_depthwise_conv_silu_names_a_bad_kernel():
    import vmamba_kernels
    with pytest.raises(ValueError, match=r'weight has shape \(7, 1, 2, 2\), expected '
                       r'\(7, 1, k, k\) with odd k'):
        vmamba_kernels.depthwise_conv_silu(torch.randn(1, 7, 4, 4), torch.randn(7, 1, 2, 2))


def test_selective_scan_backward_equals_the_closed_form_in_tensor_ops():
    # The C++ backward against its closed form (oracles.py: the same math in tensor ops,
    # recurrences by the C++ linear recurrence): a second oracle next to autograd through the
    # sequential reference.
    from tests.kernels.oracles import recurrence_rows, selective_scan_gradients
    from vmamba_kernels.selective_scan.cpp import selective_scan_cpp_backward
    inputs = make_inputs(2, 8, 37, 3, 2)
    args = [inputs[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')]
    grad_y = torch.randn(inputs['u'].shape, generator=torch.Generator().manual_seed(2))
    got = selective_scan_cpp_backward(*args, grad_y, True)
    want = selective_scan_gradients(grad_y, *args, True, recurrence_rows)
    for name, a, b in zip(('du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'ddelta_bias'), got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
