"""The C++ CPU kernels of the 2D scan (csrc/selective_scan_2d_cpu.cpp) as torch.library operators
and as the 'cpp' backend: opcheck, and value and every gradient against the sequential
references (``selective_scan_2d_reference``, ``fused_scan_2d_reference``); the C++ backward
operator also against its closed form (``oracles.selective_scan_2d_gradients``)."""
import pytest
import torch

import vmamba_kernels
from tests.kernels.oracles import recurrence_rows, selective_scan_2d_gradients
from tests.kernels.scan_inputs import assert_close_scaled, fused_inputs, make_inputs
from vmamba_kernels import available_backends, route_pixels
from vmamba_kernels.common.composite import route_widths
from vmamba_kernels.cross_selective_scan_2d.cpp import fused_scan_2d_reference
from vmamba_kernels.selective_scan_2d.reference import selective_scan_2d_reference

pytestmark = pytest.mark.skipif('cpp' not in available_backends('selective_scan_2d'),
                                reason='the C++ 2D scan kernel could not be built here')

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')
# (batch, dim, H, W, N, G): a single row, a single column, odd non-square grids both ways, a
# narrow one, grouped B/C, N = 1 (VMamba v2) and N > 1 (16: 2DMambaMIL); the last two span
# several of the kernel's 256-token tiles, with rows crossing tile boundaries.
SHAPES = [
    (2, 4, 1, 7, 1, 1),
    (2, 4, 7, 1, 4, 2),
    (1, 6, 3, 5, 4, 3),
    (2, 8, 5, 3, 16, 4),
    (1, 4, 7, 2, 1, 2),
    (1, 8, 6, 6, 16, 1),
    (1, 4, 23, 17, 1, 2),
    (1, 2, 1, 300, 4, 1),
]
# For the C++ backward: 11, 16 and 19 rows (its row passes take 8 rows at a time, then the rest
# one by one), a single column of them, and groups of more than 8 channels (it sums dB, dC over a
# group in chunks of 8).
BACKWARD_SHAPES = SHAPES + [
    (1, 10, 11, 1, 4, 2),
    (2, 20, 16, 3, 4, 2),
    (1, 24, 19, 5, 1, 1),
    (1, 18, 9, 8, 16, 1),
]


def leaves(*tensors):
    return [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]


def scan_inputs(batch, dim, height, width, state, groups, softplus=True, skip=True, **kwargs):
    inputs = make_inputs(batch, dim, height * width, state, groups, **kwargs)
    if not softplus:
        # Without softplus the caller guarantees a positive step size.
        inputs['delta'] = inputs['delta'].abs()
        inputs['delta_bias'] = inputs['delta_bias'].abs()
    if not skip:
        inputs['D'] = inputs['delta_bias'] = None
    return inputs


def public_scan(inputs, backend, height, width, softplus, requires_grad, **kwargs):
    """``vmamba_kernels.selective_scan_2d`` on fresh leaves: (output, leaves)."""
    fresh = dict(zip(NAMES, leaves(*(inputs[k] for k in NAMES))))
    if not requires_grad:
        fresh = {k: v.detach() if v is not None else None for k, v in fresh.items()}
    out = vmamba_kernels.selective_scan_2d(
        *(fresh[k] for k in NAMES[:5]), D=fresh['D'], delta_bias=fresh['delta_bias'],
        delta_softplus=softplus, height=height, width=width, backend=backend, **kwargs)
    return out, fresh


def check_against_reference(inputs, height, width, softplus, rtol=1e-4, grad_rtol=2e-4):
    ref, ref_leaves = public_scan(inputs, 'reference', height, width, softplus, True)
    out, got_leaves = public_scan(inputs, 'cpp', height, width, softplus, True)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert torch.isfinite(out).all()
    assert_close_scaled(out, ref, rtol)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    ref.backward(grad)
    out.backward(grad)
    for name in NAMES:
        if ref_leaves[name] is None:
            assert got_leaves[name] is None
            continue
        got, want = got_leaves[name].grad, ref_leaves[name].grad
        assert got.dtype == want.dtype, name
        assert torch.isfinite(got).all(), name
        assert_close_scaled(got, want, grad_rtol)


@pytest.mark.parametrize('softplus', [True, False])
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'b{}d{}H{}W{}N{}G{}'.format(*s))
def test_scan_value_and_gradients_match_reference(shape, softplus):
    batch, dim, height, width, state, groups = shape
    inputs = scan_inputs(*shape, softplus=softplus)
    check_against_reference(inputs, height, width, softplus)


@pytest.mark.parametrize('shape', [SHAPES[2], SHAPES[3]], ids=['3x5', '5x3'])
def test_scan_without_skip_and_bias(shape):
    inputs = scan_inputs(*shape, skip=False)
    check_against_reference(inputs, shape[2], shape[3], True)


def test_strong_decay_stays_finite_and_exact():
    # Decays exp(delta * A) that underflow float32 must give zeros, not NaN, forwards and back.
    inputs = scan_inputs(1, 4, 9, 11, 2, 1, softplus=False, decay=8.0)
    inputs['delta'] = torch.rand(1, 4, 99, generator=torch.Generator().manual_seed(3)) * 50
    check_against_reference(inputs, 9, 11, False)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(dtype):
    inputs = scan_inputs(2, 8, 5, 7, 4, 2, dtype=dtype)
    # The oracle sees exactly the same (rounded) half values, upcast.
    upcast = {k: v.float() if v is not None else None for k, v in inputs.items()}
    with torch.no_grad():
        ref, _ = public_scan(upcast, 'reference', 5, 7, True, False, out_dtype=torch.float32)
        out, _ = public_scan(inputs, 'cpp', 5, 7, True, False, out_dtype=torch.float32)
        default, _ = public_scan(inputs, 'cpp', 5, 7, True, False)
    assert out.dtype == torch.float32
    assert_close_scaled(out, ref)
    assert default.dtype == dtype  # out_dtype defaults to the input dtype
    # Gradients come back in each input's own dtype.
    out, fresh = public_scan(inputs, 'cpp', 5, 7, True, True, out_dtype=torch.float32)
    out.sum().backward()
    for name in NAMES:
        assert fresh[name].grad.dtype == inputs[name].dtype, name


def test_no_grad_matches_reference():
    inputs = scan_inputs(2, 8, 5, 3, 16, 4)
    with torch.no_grad():
        ref, _ = public_scan(inputs, 'reference', 5, 3, True, False)
        out, _ = public_scan(inputs, 'cpp', 5, 3, True, False)
    assert_close_scaled(out, ref)


@pytest.mark.parametrize('softplus, skip', [(True, True), (False, False)])
def test_scan_opcheck(softplus, skip):
    from vmamba_kernels.selective_scan_2d.cpp import selective_scan_2d_cpp
    inputs = scan_inputs(2, 6, 3, 5, 4, 2, softplus=softplus, skip=skip)
    args = leaves(*(inputs[k] for k in NAMES))
    torch.library.opcheck(selective_scan_2d_cpp, (*args, softplus, 3, 5))


def closed_form_gradients(inputs, grad_y, softplus, height, width):
    """The closed form on the 1D extension's recurrence: the backward the C++ one replaces."""
    return selective_scan_2d_gradients(grad_y, *(inputs[k] for k in NAMES), softplus, height,
                                       width, recurrence_rows)


def kernel_gradients(inputs, grad_y, softplus, height, width):
    """The C++ backward operator, with dD / ddelta_bias dropped where D / delta_bias is absent
    (as the autograd formula does)."""
    from vmamba_kernels.selective_scan_2d.cpp import selective_scan_2d_cpp_backward
    grads = selective_scan_2d_cpp_backward(*(inputs[k] for k in NAMES), grad_y, softplus, height,
                                           width)
    present = [inputs['D'] is not None, inputs['delta_bias'] is not None]
    return [*grads[:5], *(g if p else None for g, p in zip(grads[5:], present))]


def check_backward_against_closed_form(inputs, height, width, softplus, rtol=2e-4):
    batch, dim = inputs['u'].shape[:2]
    grad_y = torch.randn(batch, dim, height * width, generator=torch.Generator().manual_seed(7))
    got = kernel_gradients(inputs, grad_y, softplus, height, width)
    want = closed_form_gradients(inputs, grad_y, softplus, height, width)
    for name, g, w in zip(NAMES, got, want):
        if w is None:
            assert g is None, name
            continue
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert torch.isfinite(g).all(), name
        assert_close_scaled(g, w, rtol)


@pytest.mark.parametrize('softplus', [True, False])
@pytest.mark.parametrize('shape', BACKWARD_SHAPES, ids=lambda s: 'b{}d{}H{}W{}N{}G{}'.format(*s))
def test_backward_matches_closed_form(shape, softplus):
    inputs = scan_inputs(*shape, softplus=softplus)
    check_backward_against_closed_form(inputs, shape[2], shape[3], softplus)


@pytest.mark.parametrize('shape', BACKWARD_SHAPES[-3:], ids=['16x3', '19x5', '9x8'])
def test_backward_of_tall_grids_and_wide_groups_matches_reference(shape):
    # The autograd path end to end (the op's registered backward) against the reference's.
    inputs = scan_inputs(*shape)
    check_against_reference(inputs, shape[2], shape[3], True)


@pytest.mark.parametrize('softplus', [True, False])
@pytest.mark.parametrize('shape', [SHAPES[2], BACKWARD_SHAPES[-1]], ids=['3x5', '9x8'])
def test_backward_without_skip_and_bias(shape, softplus):
    inputs = scan_inputs(*shape, softplus=softplus, skip=False)
    check_backward_against_closed_form(inputs, shape[2], shape[3], softplus)
    check_against_reference(inputs, shape[2], shape[3], softplus)


@pytest.mark.parametrize('softplus', [True, False])
def test_backward_under_strong_decay(softplus):
    # Decays that underflow to 0, and (with softplus) raw steps far above its threshold of 20 and
    # beyond exp's float32 range: the slope is then exactly 1, never inf / inf.
    inputs = scan_inputs(1, 12, 17, 6, 4, 3, softplus=softplus, decay=8.0)
    inputs['delta'] = torch.rand(1, 12, 102, generator=torch.Generator().manual_seed(3)) * 120
    check_backward_against_closed_form(inputs, 17, 6, softplus)
    check_against_reference(inputs, 17, 6, softplus)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_backward_of_half_inputs(dtype):
    inputs = scan_inputs(2, 12, 9, 5, 4, 2, dtype=dtype)
    upcast = {k: v.float() if v is not None else None for k, v in inputs.items()}
    grad_y = torch.randn(2, 12, 45, generator=torch.Generator().manual_seed(2))
    got = kernel_gradients(inputs, grad_y, True, 9, 5)
    want = closed_form_gradients(upcast, grad_y, True, 9, 5)
    for name, g, w in zip(NAMES, got, want):
        assert g.dtype == inputs[name].dtype, name  # du, ddelta, dB, dC half; the rest float32
        # Computed in float32 from the same half values: only the final rounding differs.
        assert_close_scaled(g, w, 1e-2 if g.dtype == dtype else 2e-4)


def test_backward_is_deterministic_across_thread_counts():
    inputs = scan_inputs(2, 40, 11, 7, 4, 2)
    grad_y = torch.randn(2, 40, 77, generator=torch.Generator().manual_seed(4))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = kernel_gradients(inputs, grad_y, True, 11, 7)
        torch.set_num_threads(max(2, threads))
        several = kernel_gradients(inputs, grad_y, True, 11, 7)
        again = kernel_gradients(inputs, grad_y, True, 11, 7)
    finally:
        torch.set_num_threads(threads)
    for name, a, b, c in zip(NAMES, single, several, again):
        assert torch.equal(a, b) and torch.equal(b, c), name


@pytest.mark.parametrize('softplus, skip', [(True, True), (False, False)])
def test_backward_opcheck(softplus, skip):
    from vmamba_kernels.selective_scan_2d.cpp import selective_scan_2d_cpp_backward
    inputs = scan_inputs(2, 10, 3, 5, 4, 2, softplus=softplus, skip=skip)
    grad_y = torch.randn(2, 10, 15, generator=torch.Generator().manual_seed(6))
    torch.library.opcheck(selective_scan_2d_cpp_backward,
                          (*(inputs[k] for k in NAMES), grad_y, softplus, 3, 5))


def test_backward_names_a_bad_output_gradient():
    from vmamba_kernels.selective_scan_2d.cpp import selective_scan_2d_cpp_backward
    inputs = scan_inputs(1, 2, 3, 5, 1, 1)
    with pytest.raises(RuntimeError, match="grad_y must have u's shape"):
        selective_scan_2d_cpp_backward(*(inputs[k] for k in NAMES), torch.zeros(1, 2, 14), True,
                                       3, 5)


def test_kernel_names_a_bad_grid():
    from vmamba_kernels.selective_scan_2d.cpp import selective_scan_2d_cpp
    inputs = scan_inputs(1, 2, 3, 5, 1, 1)
    with pytest.raises(RuntimeError, match='height \\* width'):
        selective_scan_2d_cpp(*(inputs[k] for k in NAMES), True, 4, 4)


# The fused operator: the routes of each order, each scanned as its own grid.
ORDERS = ['cross', 'bidirectional', 'unidirectional']
FUSED_SIZES = [(3, 5), (1, 6), (6, 1), (4, 4), (17, 19)]  # 17 x 19: several tiles


def fused_reference(*args):
    return fused_scan_2d_reference(*args, selective_scan_2d_reference)


@pytest.mark.parametrize('order', ORDERS)
@pytest.mark.parametrize('height, width', FUSED_SIZES)
def test_fused_op_value_and_gradients_match_reference(order, height, width):
    from vmamba_kernels.cross_selective_scan_2d.cpp import cross_selective_scan_2d_cpp
    state = 3 if height != width else 1
    args = leaves(*fused_inputs(channels=6, height=height, width=width, rank=2, state=state,
                                seed=height * 10 + width))
    tables = (route_pixels(order, height, width), route_widths(order, height, width))
    out = cross_selective_scan_2d_cpp(*args, *tables)
    expected = fused_reference(*args, *tables)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert_close_scaled(out, expected)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(height))
    for got, want in zip(torch.autograd.grad(out, args, grad),
                         torch.autograd.grad(expected, args, grad)):
        assert_close_scaled(got, want, rtol=2e-4)


@pytest.mark.parametrize('order', ORDERS)
def test_fused_op_opcheck(order):
    from vmamba_kernels.cross_selective_scan_2d.cpp import cross_selective_scan_2d_cpp
    args = leaves(*fused_inputs(channels=4, height=3, width=5, rank=2, state=2))
    tables = (route_pixels(order, 3, 5), route_widths(order, 3, 5))
    # Not test_aot_dispatch_dynamic: the backward reads the grid widths out of the `widths`
    # tensor (fused_scan_2d_reference), which has no value when traced with fake tensors.
    torch.library.opcheck(cross_selective_scan_2d_cpp, (*args, *tables),
                          test_utils=('test_schema', 'test_autograd_registration',
                                      'test_faketensor'))


def test_fused_kernel_names_bad_widths():
    from vmamba_kernels.cross_selective_scan_2d.cpp import cross_selective_scan_2d_cpp
    args = fused_inputs(channels=2, height=3, width=5, rank=2, state=1)
    with pytest.raises(RuntimeError, match='widths\\[1\\] = 4'):
        cross_selective_scan_2d_cpp(*args, route_pixels('cross', 3, 5),
                                    torch.tensor([5, 4, 5, 3]))


def core_inputs(channels, height, width, rank, state, seed):
    gen = torch.Generator().manual_seed(seed)
    routes = vmamba_kernels.NUM_ROUTES
    x = torch.randn(2, channels, height, width, generator=gen)
    weights = (torch.randn(routes, rank + 2 * state, channels, generator=gen) * 0.5,
               torch.randn(routes, channels, rank, generator=gen) * 0.5,
               -torch.rand(routes * channels, state, generator=gen) - 0.1,
               torch.randn(routes * channels, generator=gen),
               torch.randn(routes * channels, generator=gen) * 0.5)
    return x, weights


@pytest.mark.parametrize('order', ORDERS)
@pytest.mark.parametrize('height, width, state', [(3, 5, 1), (4, 4, 2), (1, 6, 1), (6, 1, 3)])
@pytest.mark.parametrize('channel_first', [True, False])
def test_public_cross_selective_scan_2d(order, height, width, state, channel_first):
    """The fused kernel (no grad) and the composite (grad) against backend='reference'."""
    x, weights = core_inputs(6, height, width, 2, state, seed=height * 10 + width)

    def run(backend, grad):
        inputs = leaves(x, *weights) if grad else [x, *weights]
        out = vmamba_kernels.cross_selective_scan_2d(*inputs, order=order,
                                                     channel_first=channel_first,
                                                     backend=backend)
        return out, inputs

    ref, ref_inputs = run('reference', True)
    with torch.no_grad():
        fused, _ = run('cpp', False)
    tracked, tracked_inputs = run('cpp', True)
    for out in (fused, tracked):
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert_close_scaled(out, ref)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5))
    for got, want in zip(torch.autograd.grad(tracked, tracked_inputs, grad),
                         torch.autograd.grad(ref, ref_inputs, grad)):
        assert_close_scaled(got, want, rtol=2e-4)
