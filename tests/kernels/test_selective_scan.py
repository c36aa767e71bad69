"""Every selective-scan backend against the sequential reference, in value and gradient."""
import logging

import pytest
import torch

import vmamba_kernels
from tests.kernels.scan_inputs import assert_close_scaled, make_inputs, run
from vmamba_kernels import dispatch, selective_scan

FAST_BACKENDS = [b for b in vmamba_kernels.available_backends() if b != 'reference']
AUTO_CPU = 'cpp' if 'cpp' in FAST_BACKENDS else 'torch'
# (batch, dim, L, N, groups): grouped B/C, L = 1, odd L, a long L, VMamba's N = 1 and 16.
SHAPES = [
    (2, 8, 1, 1, 1),
    (1, 6, 7, 3, 3),
    (2, 8, 37, 4, 2),
    (1, 16, 129, 16, 4),
    (1, 8, 196, 1, 4),
    (1, 4, 3136, 1, 4),
]


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'b{}d{}L{}N{}G{}'.format(*s))
@pytest.mark.parametrize('softplus', [True, False])
def test_forward_and_gradients_match_reference(backend, shape, softplus):
    inputs = make_inputs(*shape)
    if not softplus:
        # Without softplus the caller guarantees a positive step size.
        inputs['delta'] = inputs['delta'].abs()
        inputs['delta_bias'] = inputs['delta_bias'].abs()
    ref, ref_leaves = run(inputs, 'reference', requires_grad=True, delta_softplus=softplus)
    out, leaves = run(inputs, backend, requires_grad=True, delta_softplus=softplus)
    assert out.dtype == torch.float32 and out.shape == inputs['u'].shape
    assert_close_scaled(out, ref)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    out.backward(grad)
    for name in inputs:
        assert_close_scaled(leaves[name].grad, ref_leaves[name].grad, rtol=2e-4)


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'b{}d{}L{}N{}G{}'.format(*s))
def test_inference_path_matches_reference(backend, shape):
    # Without autograd the 'cpp' backend takes its fused single-pass kernel.
    inputs = make_inputs(*shape)
    with torch.no_grad():
        ref, _ = run(inputs, 'reference', delta_softplus=True)
        out, _ = run(inputs, backend, delta_softplus=True)
    assert_close_scaled(out, ref)


@pytest.mark.parametrize('backend', FAST_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(backend, dtype):
    inputs = make_inputs(2, 8, 50, 4, 2, dtype=dtype)
    # The oracle sees exactly the same (rounded) half values, upcast.
    ref, _ = run({k: v.float() for k, v in inputs.items()}, 'reference', delta_softplus=True)
    out, _ = run(inputs, backend, delta_softplus=True, out_dtype=torch.float32)
    assert out.dtype == torch.float32
    assert_close_scaled(out, ref)
    default, _ = run(inputs, backend, delta_softplus=True)
    assert default.dtype == dtype  # out_dtype defaults to the input dtype


@pytest.mark.parametrize('backend', FAST_BACKENDS)
def test_strong_decay_stays_finite_and_exact(backend):
    # Steps whose decay exp(delta * A) underflows float32 must not poison the chunked path.
    inputs = make_inputs(1, 4, 500, 2, 1, decay=5.0)
    inputs['delta'] = torch.rand(1, 4, 500) * 50
    ref, _ = run(inputs, 'reference')
    out, _ = run(inputs, backend)
    assert torch.isfinite(out).all()
    assert_close_scaled(out, ref)


def test_hand_computed_recurrence():
    # dim 1, N 1, L 3: h = [1*2, 0.5*2 + 1*1, 0.5*2 + 1*(-1)] with exp(delta*A) = 0.5, delta = 1.
    u = torch.tensor([[[2.0, 1.0, -1.0]]])
    delta = torch.ones(1, 1, 3)
    A = torch.tensor([[-torch.log(torch.tensor(2.0)).item()]])
    B = torch.ones(1, 1, 1, 3)
    C = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    D = torch.tensor([10.0])
    h = torch.tensor([2.0, 2.0, 0.0])
    expected = C.view(3) * h + 10.0 * u.view(3)
    for backend in ['reference'] + FAST_BACKENDS:
        out = selective_scan(u, delta, A, B, C, D=D, backend=backend)
        torch.testing.assert_close(out.view(3), expected)


def test_ungrouped_three_dim_B_C_equals_one_group():
    inputs = make_inputs(2, 6, 20, 3, 1)
    grouped, _ = run(inputs, 'torch')
    flat = dict(inputs, B=inputs['B'][:, 0], C=inputs['C'][:, 0])
    ungrouped, _ = run(flat, 'torch')
    torch.testing.assert_close(grouped, ungrouped)


@pytest.mark.parametrize('bad, message', [
    (dict(u=torch.zeros(2, 8)), 'u has shape'),
    (dict(delta=torch.zeros(2, 8, 5)), 'delta has shape'),
    (dict(A=torch.zeros(7, 4)), 'A has shape'),
    (dict(B=torch.zeros(2, 2, 4, 9)), 'B has shape'),
    (dict(C=torch.zeros(2, 3, 4, 10)), 'not divisible by the 3 groups of C'),
    (dict(D=torch.zeros(3)), 'D has shape'),
])
def test_bad_shapes_name_the_argument(bad, message):
    inputs = make_inputs(2, 8, 10, 4, 2)
    inputs.update(bad)
    with pytest.raises(ValueError, match=message):
        run(inputs, 'torch')


def test_unknown_backend_is_named():
    inputs = make_inputs(1, 4, 5, 1, 1)
    with pytest.raises(ValueError, match="'nope'.*has no selective_scan implementation"):
        run(inputs, 'nope')


def resolved(device_type, requested=None, operation='selective_scan'):
    return dispatch.resolve(operation, device_type, requested)[0].backend


def test_override_order_and_single_log(monkeypatch, caplog):
    monkeypatch.setattr(dispatch, '_logged', set())
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.setattr(dispatch.logger, 'propagate', True)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    inputs = make_inputs(1, 4, 5, 1, 1)
    with caplog.at_level(logging.INFO, logger='vmamba_kernels'):
        run(inputs, None)
        run(inputs, None)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and f"'{AUTO_CPU}' backend" in messages[0] and \
        messages[0].endswith('automatic choice for cpu')

    monkeypatch.setenv(dispatch.ENV_VAR, 'reference')
    assert resolved('cpu') == 'reference'
    vmamba_kernels.set_default_backend('torch')  # a config's choice beats the environment
    assert resolved('cpu') == 'torch'
    assert resolved('cpu', 'reference') == 'reference'
    monkeypatch.setenv(dispatch.ENV_VAR, 'bogus')
    vmamba_kernels.set_default_backend(None)
    with pytest.raises(ValueError, match='VMAMBA_SCAN_BACKEND'):
        resolved('cpu')
    with pytest.raises(ValueError, match="Unknown scan backend 'bogus'"):
        vmamba_kernels.set_default_backend('bogus')


def test_compiled_cpu_kernel_is_built_here():
    # The install builds it; a machine where it cannot be built still runs, on 'torch'.
    assert 'cpp' in FAST_BACKENDS, \
        dispatch.implementation('selective_scan', 'cpp').unavailable_reason()


@pytest.mark.parametrize('operation', dispatch.operations())
def test_automatic_choice_never_picks_the_reference_loop(operation, monkeypatch):
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    # Only implementations registered with a priority take part; the reference has none.
    assert dispatch.implementation(operation, 'reference').priority is None
    assert resolved('cpu', operation=operation) != 'reference'


def test_one_backend_name_selects_every_operation(monkeypatch):
    # VMAMBA_SCAN_BACKEND=cuda once still ran the Triton cross-scan: a name now picks that
    # backend's implementation of every operation (its 'torch' one where the operation has none
    # of that name), or fails naming the operation.
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.setenv(dispatch.ENV_VAR, 'cpp')
    for operation in dispatch.operations():
        expected = 'cpp' if 'cpp' in dispatch.backends_of(operation) else 'torch'
        assert resolved('cpu', operation=operation) == expected
    monkeypatch.setenv(dispatch.ENV_VAR, 'cuda')
    with pytest.raises(RuntimeError, match="'cuda'.*(not available|does not run)"):
        resolved('cpu', operation='cross_selective_scan')


def test_unavailable_backend_is_skipped_with_its_reason(monkeypatch):
    registry = {operation: dict(impls) for operation, impls in dispatch._IMPLEMENTATIONS.items()}
    monkeypatch.setattr(dispatch, '_IMPLEMENTATIONS', registry)
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch.register('selective_scan', 'gpu-only', lambda *a, **k: None, devices=('cpu', ),
                      priority=9, unavailable_reason=lambda: 'nvcc not found')
    chosen, reason = dispatch.resolve('selective_scan', 'cpu')
    assert chosen.backend == AUTO_CPU and 'skipped gpu-only: nvcc not found' in reason
    with pytest.raises(RuntimeError, match="'gpu-only'.*not available for selective_scan: nvcc"):
        resolved('cpu', 'gpu-only')
    # A device with no kernel at all is an error that says what to do, not a silent slow loop.
    with pytest.raises(RuntimeError, match="No selective_scan kernel for xla.*backend='reference'"):
        resolved('xla')


def test_a_new_operation_registers_without_touching_the_others(monkeypatch):
    registry = {operation: dict(impls) for operation, impls in dispatch._IMPLEMENTATIONS.items()}
    monkeypatch.setattr(dispatch, '_IMPLEMENTATIONS', registry)
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch.register('double', 'torch', lambda x: 2 * x, devices=('cpu', ), priority=0)
    assert dispatch.run('double', 'cpu', None, torch.ones(2)).tolist() == [2.0, 2.0]
    assert dispatch.backends_of('double') == ['torch']
    assert dispatch.backends_of('selective_scan') == list(dispatch._IMPLEMENTATIONS[
        'selective_scan'])
