"""Mamba2's SSD scan (``vmamba_kernels.ssd_scan``): the chunked torch form against the sequential
recurrence (value, final states, every gradient) and against the full L x L matrix form written
out here; its FLOP rule against torch's counter; export with a symbolic L; one-line errors."""
import pytest
import torch
from torch._dynamo.backends.debugging import aot_eager
from torch.utils.flop_counter import FlopCounterMode

import vmamba_kernels
from vmamba_kernels import dispatch
from vmamba_kernels.ssd_scan import ssd_scan_macs

GRADIENT_INPUTS = ('x', 'dt', 'A', 'B', 'C', 'D', 'dt_bias', 'initial_states')


def make_inputs(batch, length, heads, headdim, state, groups, seed=0, dtype=torch.float32,
                D_per_channel=False, initial=True, bias=True):
    gen = torch.Generator().manual_seed(seed)

    def randn(*size, scale=1.0):
        return torch.randn(*size, generator=gen) * scale

    inputs = dict(x=randn(batch, length, heads, headdim).to(dtype),
                  dt=randn(batch, length, heads, scale=0.5).to(dtype),
                  A=-torch.rand(heads, generator=gen) * 2 - 0.1,
                  B=randn(batch, length, groups, state, scale=0.5).to(dtype),
                  C=randn(batch, length, groups, state, scale=0.5).to(dtype),
                  D=randn(heads, headdim) if D_per_channel else randn(heads),
                  dt_bias=randn(heads, scale=0.5) if bias else None,
                  initial_states=randn(batch, heads, headdim, state) if initial else None)
    return inputs


def run_with_grads(inputs, backend, seed=1, **options):
    """(y, final_states, gradients by input name) of a fixed random loss; ``backend`` is a
    backend name, or a callable taking the inputs by name (a compiled scan)."""
    leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None)
              for k, v in inputs.items()}
    if callable(backend):
        y, final = backend(**leaves)
    else:
        y, final = vmamba_kernels.ssd_scan(**leaves, return_final_states=True, backend=backend,
                                           **options)
    gen = torch.Generator().manual_seed(seed)
    loss = ((y.float() * torch.randn(y.shape, generator=gen)).sum()
            + (final * torch.randn(final.shape, generator=gen)).sum())
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items() if v is not None}
    return y, final, grads


def assert_same_run(got, want, rtol=1e-4, atol=1e-4):
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol, msg='y')
    torch.testing.assert_close(got[1], want[1], rtol=rtol, atol=atol, msg='final_states')
    assert sorted(got[2]) == sorted(want[2])
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], rtol=rtol, atol=atol,
                                   msg=f'gradient of {name}')


CASES = {
    # (batch, L, heads, headdim, N, groups), chunk, options
    'L not a multiple of the chunk, groups > 1, initial states, softplus':
        ((2, 13, 4, 3, 5, 2), 4, dict(dt_softplus=True), {}),
    'L shorter than one chunk, D per channel, no initial states':
        ((1, 7, 2, 4, 3, 1), 16, dict(dt_softplus=True), dict(D_per_channel=True, initial=False)),
    'whole chunks, a group per head, dt used as given':
        ((1, 12, 3, 2, 4, 3), 4, {}, dict(bias=False)),
}


@pytest.mark.parametrize('case', list(CASES))
def test_torch_form_matches_the_recurrence_in_value_final_states_and_every_gradient(case):
    shape, chunk, options, input_options = CASES[case]
    inputs = make_inputs(*shape, **input_options)
    if not options:
        inputs['dt'] = inputs['dt'].abs() + 0.05  # no softplus: dt' must be a positive step
    got = run_with_grads(inputs, 'torch', chunk_size=chunk, **options)
    want = run_with_grads(inputs, 'reference', chunk_size=chunk, **options)
    assert_same_run(got, want)
    assert set(got[2]) == {k for k in GRADIENT_INPUTS if inputs[k] is not None}


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32_and_return_their_dtype(dtype):
    inputs = make_inputs(2, 11, 4, 3, 4, 2, dtype=dtype)
    got = run_with_grads(inputs, 'torch', chunk_size=4, dt_softplus=True)
    want = run_with_grads(inputs, 'reference', chunk_size=4, dt_softplus=True)
    assert got[0].dtype == dtype and got[1].dtype == torch.float32
    assert got[2]['x'].dtype == dtype and got[2]['A'].dtype == torch.float32
    # Both compute in float32 from the same half inputs: they differ by the output's rounding.
    tolerance = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=3e-3,
                                                                                 atol=3e-3)
    assert_same_run(got, want, **tolerance)
    # And the half run stays near the float32 run of the same (rounded) inputs.
    full = run_with_grads({k: (v.float() if v is not None else None) for k, v in inputs.items()},
                          'reference', chunk_size=4, dt_softplus=True)
    torch.testing.assert_close(got[0].float(), full[0], **tolerance)


def full_matrix_form(x, dt, A, B, C, D, dt_bias, initial_states):
    """y = (C B^T * L) (dt' x) + exp(a_1 + ... + a_i) S0 C_i + D x over the whole sequence at
    once, L[i, j] = exp(a_{j+1} + ... + a_i) (a = dt' A); softplus on. Independent of the chunked
    form: one L x L matrix per head, built from pairwise differences of running sums."""
    batch, length, heads, headdim = x.shape
    per_group = heads // B.shape[2]
    step = torch.nn.functional.softplus(dt + dt_bias)  # (b, L, h)
    running = torch.cumsum(step * A, 1).transpose(1, 2)  # (b, h, L)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    decay = torch.exp((running[..., :, None] - running[..., None, :]).masked_fill(~causal,
                                                                                  -torch.inf))
    Bh, Ch = (t.repeat_interleave(per_group, dim=2) for t in (B, C))
    scores = torch.einsum('bihn,bjhn->bhij', Ch, Bh) * decay
    y = torch.einsum('bhij,bjhp->bihp', scores, step[..., None] * x)
    y = y + torch.einsum('bhpn,bihn,bhi->bihp', initial_states, Ch, torch.exp(running))
    return y + x * D[:, None]


@pytest.mark.parametrize('chunk', [1, 3, 10, 32])
def test_torch_form_equals_the_full_matrix_form_at_any_chunk(chunk):
    inputs = make_inputs(2, 10, 4, 2, 3, 2, seed=3)
    want = full_matrix_form(**inputs)
    got = vmamba_kernels.ssd_scan(**inputs, chunk_size=chunk, dt_softplus=True, backend='torch')
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_the_automatic_backend_on_the_cpu_is_the_torch_form_when_the_cpp_kernel_is_missing(
        monkeypatch):
    from vmamba_kernels.ssd_scan import cpp
    monkeypatch.setattr(cpp._EXTENSION, '_failure', 'no compiler here')
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    impl, reason = dispatch.resolve('ssd_scan', 'cpu')
    assert impl.backend == 'torch' and 'cpp: no compiler here' in reason


def test_the_flop_rule_counts_the_torch_forms_matrix_products():
    inputs = make_inputs(2, 37, 4, 8, 16, 2, initial=True)
    with FlopCounterMode(display=False) as counter:
        vmamba_kernels.ssd_scan(**inputs, chunk_size=16, dt_softplus=True, backend='torch')
    # Torch counts two FLOPs per multiply-add; the rule's D skip is element-wise, uncounted.
    assert counter.get_total_flops() == 2 * ssd_scan_macs(2, 37, 4, 8, 16, groups=2,
                                                          chunk_size=16, with_skip=False)


class SSDModule(torch.nn.Module):
    def forward(self, x, dt, A, B, C, D, initial_states):
        return vmamba_kernels.ssd_scan(x, dt, A, B, C, chunk_size=4, D=D, dt_softplus=True,
                                       initial_states=initial_states, return_final_states=True,
                                       backend='torch')


def test_the_torch_form_exports_with_a_symbolic_length():
    inputs = make_inputs(1, 9, 2, 3, 4, 1, bias=False)
    args = tuple(inputs[k] for k in ('x', 'dt', 'A', 'B', 'C', 'D', 'initial_states'))
    # DYNAMIC lets export keep the guards it derives (at least two chunks) instead of failing.
    length = torch.export.Dim.DYNAMIC
    exported = torch.export.export(SSDModule(), args, dynamic_shapes=(
        {1: length}, {1: length}, None, {1: length}, {1: length}, None, None))
    for other_length in (9, 6, 17, 64):
        other = make_inputs(1, other_length, 2, 3, 4, 1, seed=other_length, bias=False)
        args = tuple(other[k] for k in ('x', 'dt', 'A', 'B', 'C', 'D', 'initial_states'))
        got = exported.module()(*args)
        want = vmamba_kernels.ssd_scan(*args[:5], chunk_size=4, D=other['D'], dt_softplus=True,
                                       initial_states=other['initial_states'],
                                       return_final_states=True, backend='reference')
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _bad(name):
    inputs = make_inputs(1, 6, 4, 2, 3, 2)
    options = {}
    if name == 'groups':
        inputs['B'], inputs['C'] = (torch.randn(1, 6, 3, 3) for _ in range(2))
    elif name == 'dt':
        inputs['dt'] = inputs['dt'][:, :5]
    elif name == 'chunk zero':
        options['chunk_size'] = 0
    elif name == 'chunk negative':
        options['chunk_size'] = -8
    elif name == 'A dtype':
        inputs['A'] = inputs['A'].double()
    elif name == 'D':
        inputs['D'] = torch.randn(4, 3)
    elif name == 'initial_states':
        inputs['initial_states'] = torch.randn(1, 4, 2, 5)
    return inputs, options


@pytest.mark.parametrize('name, message', [
    ('groups', r'^ssd_scan: heads=4 is not divisible by the 3 groups of B and C; '),
    ('dt', r'^ssd_scan: dt has shape \(1, 5, 4\), expected \(1, 6, 4\) = \(batch, L, heads\)'),
    ('chunk zero', r'^ssd_scan: chunk_size=0 must be a positive int\.$'),
    ('chunk negative', r'^ssd_scan: chunk_size=-8 must be a positive int\.$'),
    ('A dtype', r'^ssd_scan: A has dtype torch\.float64, expected torch\.float32'),
    ('D', r'^ssd_scan: D has shape \(4, 3\), expected \(4,\) or \(4, 2\)\.$'),
    ('initial_states', r'^ssd_scan: initial_states has shape \(1, 4, 2, 5\), expected '
                       r'\(1, 4, 2, 3\)'),
])
def test_a_contract_violation_is_one_line_naming_it(name, message):
    inputs, options = _bad(name)
    with pytest.raises((ValueError, TypeError), match=message) as error:
        vmamba_kernels.ssd_scan(**inputs, **options, backend='torch')
    assert '\n' not in str(error.value)



def test_the_torch_form_compiles_with_dynamic_lengths_and_differentiates():
    graphs = []

    def backend_counting_graphs(graph, example_inputs):
        graphs.append(graph)
        return aot_eager(graph, example_inputs)

    # As a module calls it: the bound operation (the public function logs its first choice,
    # which fullgraph compilation refuses).
    kernel = dispatch.bind('ssd_scan', 'torch')
    kernel.backend('cpu')  # resolved before tracing, as after a module's first forward

    def scan(x, dt, A, B, C, **rest):
        return kernel(x, dt, A, B, C, **rest, **options)

    options = dict(chunk_size=4, dt_softplus=True, return_final_states=True)
    compiled = torch.compile(scan, backend=backend_counting_graphs, fullgraph=True)

    def with_symbolic_length(**leaves):
        # L alone symbolic (the rest static) keeps the trace cheap; one graph serves both.
        for name in ('x', 'dt', 'B', 'C'):
            torch._dynamo.mark_dynamic(leaves[name], 1)
        return compiled(**leaves)

    for length in (5, 11):
        inputs = make_inputs(1, length, 2, 2, 3, 1, seed=length)
        got = run_with_grads(inputs, with_symbolic_length)
        want = run_with_grads(inputs, 'reference', chunk_size=4, dt_softplus=True)
        assert_same_run(got, want)
    assert len(graphs) == 1, 'a second length recompiled: L is not symbolic'
