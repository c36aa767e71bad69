"""The 2D selective scan (2DMamba): the sequential reference against a closed form written by
hand, every backend against the reference, the checks on bad input, and SS2D's core with 2D scans
against per-route 2D scans of the rotated and transposed maps."""
import pytest
import torch
import torch.nn.functional as F

import vmamba_kernels
from tests.kernels.scan_inputs import assert_close_scaled, make_inputs
from vmamba_kernels import available_backends
from vmamba_kernels.selective_scan_2d.reference import selective_scan_2d_reference

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')
FAST_BACKENDS = [b for b in available_backends('selective_scan_2d') if b != 'reference']
CORE_BACKENDS = [b for b in available_backends('cross_selective_scan_2d') if b != 'reference']


def l_shaped_paths(inputs, height, width, softplus=True):
    """y by its closed form: every source above-left of (i, j) reaches it along its own row, then
    down column j; the decay of each step taken multiplies in. Loops only, for tiny grids."""
    u, A, B, C, D = (inputs[k].float() for k in ('u', 'A', 'B', 'C', 'D'))
    step = inputs['delta'].float() + inputs['delta_bias'][:, None]
    step = F.softplus(step) if softplus else step
    batch, dim, _ = u.shape
    per_group = dim // B.shape[1]
    y = torch.zeros(batch, dim, height * width)
    for b in range(batch):
        for d in range(dim):
            Bd, Cd = B[b, d // per_group], C[b, d // per_group]

            def decay(i, j, b=b, d=d):
                return torch.exp(step[b, d, i * width + j] * A[d])

            for i in range(height):
                for j in range(width):
                    total = torch.zeros(A.shape[1])
                    for si in range(i + 1):
                        for sj in range(j + 1):
                            weight = torch.ones(A.shape[1])
                            for col in range(sj + 1, j + 1):  # along the source's row
                                weight = weight * decay(si, col)
                            for row in range(si + 1, i + 1):  # then down column j
                                weight = weight * decay(row, j)
                            s = si * width + sj
                            total = total + weight * step[b, d, s] * Bd[:, s] * u[b, d, s]
                    p = i * width + j
                    y[b, d, p] = (total * Cd[:, p]).sum() + D[d] * u[b, d, p]
    return y


def scan(inputs, backend, height, width, requires_grad=False, **kwargs):
    leaves = {k: v.detach().clone().requires_grad_(requires_grad) for k, v in inputs.items()}
    y = vmamba_kernels.selective_scan_2d(
        *(leaves[k] for k in NAMES[:5]), D=leaves['D'], delta_bias=leaves['delta_bias'],
        height=height, width=width, backend=backend, **kwargs)
    return y, leaves


@pytest.mark.parametrize('height, width', [(2, 3), (3, 2), (1, 4), (4, 1), (3, 3)])
@pytest.mark.parametrize('softplus', [True, False])
def test_reference_is_the_sum_over_l_shaped_paths(height, width, softplus):
    inputs = make_inputs(2, 4, height * width, 2, 2, seed=height * 10 + width)
    if not softplus:
        inputs['delta'], inputs['delta_bias'] = inputs['delta'].abs(), inputs['delta_bias'].abs()
    y = selective_scan_2d_reference(*(inputs[k] for k in NAMES), delta_softplus=softplus,
                                    height=height, width=width)
    torch.testing.assert_close(y, l_shaped_paths(inputs, height, width, softplus))


def test_a_two_by_two_grid_by_hand():
    # One channel, N = 1, the same decay a everywhere, drives x = delta B u = 1, 2, 3, 4, C = 1:
    # h[1, 1] = x11 + a (x01 + x10) + a^2 x00 (one L-shaped path from (0, 0), not the two
    # monotone paths a sum over all paths would count).
    a = 0.5
    u = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    delta = torch.ones(1, 1, 4)
    A = torch.tensor([[torch.log(torch.tensor(a)).item()]])
    ones = torch.ones(1, 1, 4)
    y = vmamba_kernels.selective_scan_2d(u, delta, A, ones, ones, height=2, width=2,
                                         backend='reference')
    expected = [1.0, 2.0 + a * 1.0, 3.0 + a * 1.0, 4.0 + a * (2.0 + 3.0) + a * a * 1.0]
    torch.testing.assert_close(y.flatten(), torch.tensor(expected))


# (batch, dim, H, W, N, groups): a row, a column, odd non-square grids both ways, grouped B/C,
# N = 1 (VMamba v2) and 16 (vanilla), and a grid larger than the torch backend's chunk.
SHAPES = [(2, 4, 1, 9, 2, 1), (1, 4, 9, 1, 2, 2), (2, 6, 3, 5, 3, 3), (1, 4, 5, 3, 1, 1),
          (1, 8, 7, 2, 16, 4), (1, 4, 20, 19, 1, 2)]


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'b{}d{}_{}x{}_N{}G{}'.format(*s))
def test_every_backend_matches_the_reference(backend, shape):
    batch, dim, height, width, state, groups = shape
    inputs = make_inputs(batch, dim, height * width, state, groups, seed=sum(shape))
    ref, ref_leaves = scan(inputs, 'reference', height, width, True, delta_softplus=True)
    out, leaves = scan(inputs, backend, height, width, True, delta_softplus=True)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert_close_scaled(out, ref)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    ref.backward(grad)
    out.backward(grad)
    for name in NAMES:
        assert_close_scaled(leaves[name].grad, ref_leaves[name].grad, rtol=2e-4)
    with torch.no_grad():
        assert_close_scaled(scan(inputs, backend, height, width, delta_softplus=True)[0], ref)


@pytest.mark.parametrize('backend', FAST_BACKENDS)
def test_strong_decay_and_no_softplus(backend):
    # Decays down to exp(-40): nothing may overflow or divide by a vanishing product.
    inputs = make_inputs(1, 4, 6 * 7, 2, 1, decay=40.0, seed=3)
    inputs['delta'], inputs['delta_bias'] = inputs['delta'].abs() + 0.5, inputs['delta_bias'].abs()
    ref, ref_leaves = scan(inputs, 'reference', 6, 7, True)
    out, leaves = scan(inputs, backend, 6, 7, True)
    assert torch.isfinite(out).all()
    assert_close_scaled(out, ref)
    grad = torch.ones_like(ref)
    ref.backward(grad)
    out.backward(grad)
    for name in NAMES:
        assert torch.isfinite(leaves[name].grad).all()
        assert_close_scaled(leaves[name].grad, ref_leaves[name].grad, rtol=2e-4)


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(backend, dtype):
    inputs = make_inputs(1, 4, 4 * 6, 2, 2, dtype=dtype, seed=5)
    ref, _ = scan({k: v.float() for k, v in inputs.items()}, 'reference', 4, 6,
                  delta_softplus=True)
    out, _ = scan(inputs, backend, 4, 6, delta_softplus=True, out_dtype=torch.float32)
    assert out.dtype == torch.float32
    assert_close_scaled(out, ref)
    assert scan(inputs, backend, 4, 6, delta_softplus=True)[0].dtype == dtype


@pytest.mark.parametrize('height, width, error, message', [
    (3, 4, ValueError, 'height * width = 3 * 4 = 12 does not match the sequence length L = 10'),
    (None, 5, ValueError, 'pass height= and width='),
    (2.0, 5, TypeError, 'height must be an int'),
    (0, 5, ValueError, 'height=0 must be at least 1'),
])
def test_a_wrong_grid_is_named(height, width, error, message):
    inputs = make_inputs(1, 2, 10, 1, 1)
    with pytest.raises(error, match=message.replace('*', r'\*')):
        scan(inputs, 'torch', height, width)


def test_a_wrong_shape_names_the_operation_and_the_input():
    inputs = make_inputs(1, 2, 6, 1, 1)
    inputs['B'] = inputs['B'][..., :5]
    with pytest.raises(ValueError, match=r'selective_scan_2d: B has shape \(1, 1, 1, 5\)'):
        scan(inputs, 'torch', 2, 3)


def core_inputs(channels, height, width, rank=2, state=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    routes = vmamba_kernels.NUM_ROUTES
    return dict(x=torch.randn(2, channels, height, width, generator=gen),
                x_proj_weight=torch.randn(routes, rank + 2 * state, channels, generator=gen) * 0.5,
                dt_projs_weight=torch.randn(routes, channels, rank, generator=gen) * 0.5,
                A=-torch.rand(routes * channels, state, generator=gen) - 0.1,
                D=torch.randn(routes * channels, generator=gen),
                delta_bias=torch.randn(routes * channels, generator=gen) * 0.5)


def by_rotations(x, x_proj_weight, dt_projs_weight, A, D, delta_bias):
    """The 'cross' core from first principles: route 0 is the 2D scan of the map, route 1 of its
    transpose, routes 2 and 3 of those turned by 180 degrees; each result is turned back."""
    views = [(lambda m: m, lambda m: m), (lambda m: m.transpose(-1, -2),) * 2,
             (lambda m: m.flip(-1, -2),) * 2,
             (lambda m: m.transpose(-1, -2).flip(-1, -2),
              lambda m: m.flip(-1, -2).transpose(-1, -2))]
    channels, rank = x.shape[1], dt_projs_weight.shape[-1]
    state = A.shape[1]
    total = 0
    for route, (to_view, back) in enumerate(views):
        seen = to_view(x)
        rows, cols = seen.shape[-2:]
        seq = seen.flatten(2)
        low, B, C = torch.einsum('rc,bcl->brl', x_proj_weight[route], seq).split(
            [rank, state, state], dim=1)
        delta = torch.einsum('cr,brl->bcl', dt_projs_weight[route], low)
        part = slice(route * channels, (route + 1) * channels)
        y = selective_scan_2d_reference(seq, delta, A[part], B[:, None], C[:, None], D[part],
                                        delta_bias[part], True, rows, cols)
        total = total + back(y.view(-1, channels, rows, cols))
    return total


@pytest.mark.parametrize('backend', ['reference', *CORE_BACKENDS])
@pytest.mark.parametrize('height, width', [(3, 5), (4, 4), (1, 6), (6, 1)])
def test_the_core_scans_each_route_from_its_own_corner(backend, height, width):
    inputs = core_inputs(4, height, width, seed=height + width)
    expected = by_rotations(**inputs)
    for grad_enabled in (False, True):  # fused kernels serve inference, the composite training
        with torch.set_grad_enabled(grad_enabled):
            leaves = {k: v.clone().requires_grad_(grad_enabled) for k, v in inputs.items()}
            out = vmamba_kernels.cross_selective_scan_2d(*leaves.values(), backend=backend)
        assert_close_scaled(out, expected)


@pytest.mark.parametrize('backend', CORE_BACKENDS)
@pytest.mark.parametrize('order', ['cross', 'bidirectional', 'unidirectional'])
def test_every_core_backend_matches_the_reference_in_value_and_gradient(backend, order):
    inputs = core_inputs(6, 3, 5, rank=2, state=3, seed=1)
    results = {}
    for name in ('reference', backend):
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        out = vmamba_kernels.cross_selective_scan_2d(*leaves.values(), order=order,
                                                     channel_first=False, backend=name)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float32)).view_as(out))
        results[name] = out, {k: v.grad for k, v in leaves.items()}
    assert results[backend][0].shape == (2, 3, 5, 6)
    assert_close_scaled(results[backend][0], results['reference'][0])
    for key in inputs:
        assert_close_scaled(results[backend][1][key], results['reference'][1][key], rtol=2e-4)


def test_the_flop_counter_sees_the_2d_scan_rule():
    # The official multiply-add rule of 2DMamba: the 1D scan's 9 B L D N + B D L, plus 6 B L D N
    # for the column pass; torch's counter counts two FLOPs per multiply-add.
    from torch.utils.flop_counter import FlopCounterMode
    backends = [b for b in ('cpp', ) if b in FAST_BACKENDS]
    if not backends:
        pytest.skip('no kernel operator of the 2D scan runs here')
    inputs = make_inputs(2, 8, 12, 3, 2)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        scan(inputs, 'cpp', 3, 4, delta_softplus=True)
    batch, dim, length, state = 2, 8, 12, 3
    assert counter.get_total_flops() == 2 * (9 * batch * length * dim * state +
                                             batch * dim * length +
                                             6 * batch * length * dim * state)
    # The fused core: four routes' scans plus the delta projection formed inside the kernel.
    core = core_inputs(4, 3, 5, rank=2, state=3)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vmamba_kernels.cross_selective_scan_2d(*core.values(), backend='cpp')
    counts = {str(op): n for op, n in counter.get_flop_counts()['Global'].items()}
    per_route = 15 * 2 * 15 * 4 * 3 + 2 * 4 * 15
    assert counts['vmamba.cross_selective_scan_2d_cpp'] == 2 * (4 * per_route + 2 * 4 * 4 * 2 * 15)
