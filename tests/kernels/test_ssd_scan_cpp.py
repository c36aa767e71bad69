"""The C++ CPU kernels of SSD (csrc/ssd_scan_cpu.cpp) as torch.library operators and as the 'cpp'
backend: value, final states and every gradient against the sequential reference (autograd of
its loop over tokens), half inputs, opcheck of both operators, the automatic choice on the CPU
and its FLOP rule."""
import logging

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import vmamba_kernels
from tests.kernels.test_ssd_scan import assert_same_run, make_inputs, run_with_grads
from vmamba_kernels import available_backends, dispatch
from vmamba_kernels.ssd_scan import ssd_scan_macs

pytestmark = pytest.mark.skipif('cpp' not in available_backends('ssd_scan'),
                                reason='the C++ SSD kernel could not be built here')

CASES = {
    # (batch, L, heads, headdim, N, groups), ssd_scan options, make_inputs options. headdim 59
    # takes each of the kernel's 32-, 16-, 8- and 1-channel paths, and N = 9 its odd last state;
    # 37 and 70 tokens end mid-way through the backward's 32-token segments.
    'groups > 1, initial states, softplus, D per head':
        ((2, 13, 4, 3, 5, 2), dict(dt_softplus=True), {}),
    'one group, D per channel, no initial states, headdim 59':
        ((1, 37, 2, 59, 9, 1), dict(dt_softplus=True), dict(D_per_channel=True, initial=False)),
    'a group per head, dt used as given, no bias, headdim 11, 70 tokens':
        ((2, 70, 3, 11, 16, 3), {}, dict(bias=False)),
    # headdims that are multiples of 8 take the forward's register-tiled path: headdim 24 its
    # 16- and 8-channel tiles, N = 9 its 4-row and 1-row tiles, 70 tokens two whole 32-token
    # blocks and a part one.
    'the tiled forward: headdim 24, N 9, 70 tokens, D per channel':
        ((2, 70, 4, 24, 9, 2), dict(dt_softplus=True), dict(D_per_channel=True)),
    'the tiled forward: headdim 8, ssd-tiny-like N 64, no initial states':
        ((1, 45, 4, 8, 64, 4), dict(dt_softplus=True), dict(initial=False)),
}


@pytest.mark.parametrize('case', list(CASES))
def test_cpp_matches_the_recurrence_in_value_final_states_and_every_gradient(case):
    shape, options, input_options = CASES[case]
    inputs = make_inputs(*shape, **input_options)
    if not options:
        inputs['dt'] = inputs['dt'].abs() + 0.05  # no softplus: dt' must be a positive step
    got = run_with_grads(inputs, 'cpp', **options)
    want = run_with_grads(inputs, 'reference', **options)
    assert_same_run(got, want)


def test_without_d_the_skip_is_absent():
    inputs = make_inputs(1, 9, 2, 8, 4, 1)
    inputs['D'] = None
    got = run_with_grads(inputs, 'cpp', dt_softplus=True)
    want = run_with_grads(inputs, 'reference', dt_softplus=True)
    assert 'D' not in got[2]
    assert_same_run(got, want)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32_and_return_their_dtype(dtype):
    inputs = make_inputs(2, 11, 4, 3, 4, 2, dtype=dtype)
    got = run_with_grads(inputs, 'cpp', dt_softplus=True)
    want = run_with_grads(inputs, 'reference', dt_softplus=True)
    assert got[0].dtype == dtype and got[1].dtype == torch.float32
    assert got[2]['x'].dtype == dtype and got[2]['B'].dtype == dtype
    assert got[2]['A'].dtype == torch.float32
    # Both compute in float32 from the same half inputs: they differ by the output's rounding.
    tolerance = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=3e-3,
                                                                                 atol=3e-3)
    assert_same_run(got, want, **tolerance)


def test_y_alone_and_out_dtype():
    inputs = make_inputs(1, 6, 2, 4, 3, 1)
    y = vmamba_kernels.ssd_scan(**inputs, dt_softplus=True, out_dtype=torch.float64,
                                backend='cpp')
    want = vmamba_kernels.ssd_scan(**inputs, dt_softplus=True, backend='reference')
    assert y.dtype == torch.float64
    torch.testing.assert_close(y.float(), want, rtol=1e-5, atol=1e-5)


def operator_args(softplus, per_channel, with_optional):
    inputs = make_inputs(2, 10, 4, 9, 3, 2, D_per_channel=per_channel, initial=with_optional,
                         bias=with_optional)
    if not with_optional:
        inputs['D'] = None
    if not softplus:
        inputs['dt'] = inputs['dt'].abs() + 0.05
    return [inputs[k] for k in ('x', 'dt', 'A', 'B', 'C', 'D', 'dt_bias', 'initial_states')]


@pytest.mark.parametrize('softplus,per_channel,with_optional',
                         [(True, False, True), (False, True, True), (True, False, False)])
def test_forward_opcheck(softplus, per_channel, with_optional):
    from vmamba_kernels.ssd_scan.cpp import ssd_scan_cpp
    args = [t.detach().clone().requires_grad_() if t is not None else None
            for t in operator_args(softplus, per_channel, with_optional)]
    torch.library.opcheck(ssd_scan_cpp, (*args, 4, softplus))


@pytest.mark.parametrize('softplus,with_optional', [(True, True), (False, False)])
def test_backward_opcheck(softplus, with_optional):
    from vmamba_kernels.ssd_scan.cpp import ssd_scan_cpp_backward
    args = operator_args(softplus, False, with_optional)
    gen = torch.Generator().manual_seed(5)
    grad_y = torch.randn(2, 10, 4, 9, generator=gen)
    grad_final = torch.randn(2, 4, 9, 3, generator=gen) if with_optional else None
    torch.library.opcheck(ssd_scan_cpp_backward, (*args, grad_y, grad_final, softplus))


def test_the_cpu_picks_cpp_automatically_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(dispatch, '_logged', set())  # the choice is logged once per process
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    impl, reason = dispatch.resolve('ssd_scan', 'cpu')
    assert (impl.backend, reason) == ('cpp', 'automatic choice for cpu')
    with caplog.at_level(logging.INFO, logger='vmamba_kernels'):
        vmamba_kernels.ssd_scan(**make_inputs(1, 3, 2, 2, 2, 1), dt_softplus=True)
    assert "ssd_scan on cpu uses the 'cpp' backend" in caplog.text


def test_the_flop_rule_counts_the_chunked_form_without_the_skip():
    inputs = make_inputs(1, 70, 4, 8, 16, 2)
    with FlopCounterMode(display=False) as counter:
        vmamba_kernels.ssd_scan(**inputs, chunk_size=16, dt_softplus=True, backend='cpp')
    assert counter.get_total_flops() == 2 * ssd_scan_macs(1, 70, 4, 8, 16, 2, 16,
                                                          with_skip=False)


def test_the_gradients_are_the_same_bits_at_any_thread_count():
    inputs = make_inputs(2, 40, 6, 8, 4, 2, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_with_grads(inputs, 'cpp', dt_softplus=True)
        torch.set_num_threads(3)
        several = run_with_grads(inputs, 'cpp', dt_softplus=True)
    finally:
        torch.set_num_threads(threads)
    assert_same_run(several, one, rtol=0, atol=0)


def test_strong_decays_end_the_tiled_forwards_blocks_early_and_still_match():
    """The tiled forward carries the state divided by the block's running decay, and ends a
    block before that decay falls below e^-60; a token that decays more alone is updated
    directly. Heads with A = -0.1, -4 and -200 (dt' about 0.3 to 2.5) take all three cases."""
    inputs = make_inputs(1, 70, 3, 16, 8, 1, seed=3)
    inputs['A'] = torch.tensor([-0.1, -4.0, -200.0])
    inputs['dt'] = inputs['dt'] * 4
    got = run_with_grads(inputs, 'cpp', dt_softplus=True)
    want = run_with_grads(inputs, 'reference', dt_softplus=True)
    assert_same_run(got, want)


def test_slices_of_one_projection_are_read_in_place_with_the_same_result():
    """x, dt, B and C as strided slices (how the SSD mixer passes them) give the bits of their
    contiguous copies, on the tiled (headdim 16) and the token-by-token (headdim 5) paths."""
    for headdim in (16, 5):
        inputs = make_inputs(2, 40, 4, headdim, 6, 2, seed=7)
        batch, length, heads = inputs['dt'].shape
        wide = torch.randn(batch, length, heads * headdim + heads + 2 * 2 * 6 + 3)
        sizes = [heads * headdim, heads, 12, 12, 3]
        x, dt, B, C, _ = torch.split(wide, sizes, dim=-1)
        strided = dict(inputs, x=x.unflatten(-1, (heads, headdim)), dt=dt,
                       B=B.unflatten(-1, (2, 6)), C=C.unflatten(-1, (2, 6)))
        assert not strided['B'].is_contiguous() and not strided['dt'].is_contiguous()
        contiguous = {k: v.contiguous() if v is not None else None for k, v in strided.items()}
        got = vmamba_kernels.ssd_scan(**strided, dt_softplus=True, return_final_states=True,
                                      backend='cpp')
        want = vmamba_kernels.ssd_scan(**contiguous, dt_softplus=True,
                                       return_final_states=True, backend='cpp')
        reference = vmamba_kernels.ssd_scan(**contiguous, dt_softplus=True,
                                            return_final_states=True, backend='reference')
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        torch.testing.assert_close(got[0], reference[0], rtol=1e-4, atol=1e-4)
