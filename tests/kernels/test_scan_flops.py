"""The 1D scan operators' FLOP rules (``selective_scan/flops.py``,
``cross_selective_scan/flops.py``) against the official rule written out: 9 B L D N multiply-adds,
plus B D L for the D skip, D every channel of every route; torch's counter counts two FLOPs per
multiply-add."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry

import vmamba_kernels
from tests.kernels.scan_inputs import make_inputs
from vmamba_kernels import available_backends
from vmamba_kernels.common.composite import composite as composite_of

# Operators whose fake implementations run on meta tensors: no kernel, no GPU needed to count.
SCAN_OPERATORS = ['selective_scan_cpp', 'selective_scan_triton', 'selective_scan_cuda']
FUSED_OPERATORS = ['cross_selective_scan_triton']  # delta projected inside the kernel
PIXEL_MAJOR_OPERATORS = ['cross_selective_scan_cpp']  # given delta by a bmm


def meta(*shape):
    return torch.empty(*shape, device='meta')


def counted(call):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        call()
    return counter.get_total_flops()


@pytest.mark.parametrize('with_skip', [True, False], ids=['with-D', 'without-D'])
@pytest.mark.parametrize('name', SCAN_OPERATORS)
def test_each_scan_operator_counts_the_official_rule(name, with_skip):
    op = getattr(torch.ops.vmamba, name)
    batch, dim, length, state, groups = 2, 8, 13, 3, 2
    skip = meta(dim) if with_skip else None
    flops = counted(lambda: op(meta(batch, dim, length), meta(batch, dim, length),
                               meta(dim, state), meta(batch, groups, state, length),
                               meta(batch, groups, state, length), skip, meta(dim), True))
    # 9 * 2 * 13 * 8 * 3 = 5616 multiply-adds in the recurrence; the skip adds 2 * 8 * 13 = 208.
    assert flops == 2 * (5616 + (208 if with_skip else 0))


@pytest.mark.parametrize('with_skip', [True, False], ids=['with-D', 'without-D'])
@pytest.mark.parametrize('name', FUSED_OPERATORS)
def test_fused_cores_count_every_route_and_the_delta_projection(name, with_skip):
    op = getattr(torch.ops.vmamba, name)
    batch, channels, height, width, routes, rank, state = 2, 3, 4, 5, 4, 2, 3
    length = height * width
    skip = meta(routes * channels) if with_skip else None
    pixels = torch.empty(routes, length, dtype=torch.long, device='meta')
    flops = counted(lambda: op(meta(batch, height, width, channels),
                               meta(batch, length, routes, rank + 2 * state),
                               meta(routes, channels, rank), meta(routes * channels, state), skip,
                               meta(routes * channels), pixels))
    # D = 4 routes x 3 channels = 12 scanned channels over L = 20 tokens:
    # scan 9 * 2 * 20 * 12 * 3 = 12960, skip 2 * 12 * 20 = 480, delta = dt_weight @ its low rank
    # per route, channel and token: 2 * 4 * 3 * 2 * 20 = 960.
    assert flops == 2 * (12960 + (480 if with_skip else 0) + 960)


@pytest.mark.parametrize('with_skip', [True, False], ids=['with-D', 'without-D'])
@pytest.mark.parametrize('name', PIXEL_MAJOR_OPERATORS)
def test_pixel_major_cores_count_every_route_and_nothing_else(name, with_skip):
    op = getattr(torch.ops.vmamba, name)
    batch, channels, height, width, routes, rank, state = 2, 3, 4, 5, 4, 2, 3
    length = height * width
    skip = meta(routes * channels) if with_skip else None
    pixels = torch.empty(routes, length, dtype=torch.long, device='meta')
    flops = counted(lambda: op(meta(batch, height, width, channels),
                               meta(routes, batch, length, channels),
                               meta(batch, length, routes, rank + 2 * state),
                               meta(routes * channels, state), skip, meta(routes * channels),
                               pixels))
    # D = 4 routes x 3 channels = 12 scanned channels over L = 20 tokens:
    # scan 9 * 2 * 20 * 12 * 3 = 12960, skip 2 * 12 * 20 = 480; the delta came in made.
    assert flops == 2 * (12960 + (480 if with_skip else 0))


def test_backward_only_operators_carry_no_rule():
    # They run in backward passes only (or recompute inside one); the official tables count the
    # inference forward, and a rule here would count the scan twice in a training step.
    import tests.kernels.oracles  # noqa: F401  (defines vmamba::linear_recurrence_cpp)
    for name in ('linear_recurrence_cpp', 'selective_scan_triton_backward',
                 'selective_scan_cuda_backward', 'cross_selective_scan_triton_backward',
                 'cross_selective_scan_cpp_backward', 'ssd_scan_cpp_backward'):
        assert getattr(torch.ops.vmamba, name) not in flop_registry
    for name in SCAN_OPERATORS + FUSED_OPERATORS + PIXEL_MAJOR_OPERATORS:
        assert getattr(torch.ops.vmamba, name) in flop_registry


@pytest.mark.skipif('cpp' not in available_backends(), reason='the C++ CPU kernel is not built')
def test_the_cpu_kernels_count_the_same_through_fused_and_composite_paths():
    # Real CPU tensors: the public entry (the fused operator after the x_proj GEMM and the delta
    # bmm), without and with autograd, and the cpp backend's composite (einsums + routes +
    # selective_scan_cpp) called directly.
    inputs = make_inputs(2, 6, 11, 2, 3)
    scan = counted(lambda: vmamba_kernels.selective_scan(
        inputs['u'], inputs['delta'], inputs['A'], inputs['B'], inputs['C'], D=inputs['D'],
        delta_softplus=True, backend='cpp'))
    assert scan == 2 * (9 * 2 * 11 * 6 * 2 + 2 * 6 * 11)

    gen = torch.Generator().manual_seed(1)
    batch, channels, height, width, rank, state = 2, 3, 4, 5, 2, 2
    core = [torch.randn(batch, channels, height, width, generator=gen),
            torch.randn(4, rank + 2 * state, channels, generator=gen) * 0.5,
            torch.randn(4, channels, rank, generator=gen) * 0.5,
            -torch.rand(4 * channels, state, generator=gen) - 0.1,
            torch.randn(4 * channels, generator=gen), torch.randn(4 * channels, generator=gen)]
    fused = counted(lambda: vmamba_kernels.cross_selective_scan(*core, backend='cpp'))
    leaves = [t.clone().requires_grad_() for t in core]
    with FlopCounterMode(display=False) as counter:
        vmamba_kernels.cross_selective_scan(*leaves, backend='cpp')
    tracked = counter.get_total_flops()
    composite = counted(lambda: composite_of('cpp')(*core, 'cross', True))
    length, scanned = height * width, 4 * channels
    x_proj = batch * 4 * (rank + 2 * state) * channels * length  # 2*4*6*3*20 = 2880
    delta = batch * 4 * channels * rank * length  # 960
    scan = 9 * batch * length * scanned * state + batch * scanned * length  # 8640 + 480
    assert fused == tracked == composite == 2 * (x_proj + delta + scan)
