"""The Triton SSD scan on the CPU, under TRITON_INTERPRET=1: its custom ops (forward and
backward) pass opcheck, and its kernels agree with the sequential reference in value, final states
and every gradient, and the forward carries its FLOP rule.

Triton decides at import time whether it interprets, so the plain test run re-runs this file in a
child process with the variable set; the tests proper only run there. Shapes are tiny (the
interpreter is slow) yet cross chunks, pad the last one, use groups and split headdim in blocks.
"""
import pytest
import torch

from tests.kernels.interpreter import INTERPRETING, run_under_the_interpreter

if not INTERPRETING:

    def test_triton_ssd_scan_under_the_interpreter():
        run_under_the_interpreter(__file__)

else:
    from torch.utils.flop_counter import FlopCounterMode

    import vmamba_kernels
    from tests.kernels.test_ssd_scan import assert_same_run, make_inputs, run_with_grads
    from vmamba_kernels.ssd_scan import ssd_scan_macs
    from vmamba_kernels.ssd_scan.triton import ssd_scan_triton_backward, ssd_scan_triton_forward

    CASES = {
        # (batch, L, heads, headdim, N, groups), chunk, input options
        'two kernel chunks, the last padded, groups': ((2, 21, 4, 3, 5, 2), 8, {}),
        'headdim in two blocks, D per channel, no initial states':
            ((1, 9, 2, 70, 3, 1), 64, dict(D_per_channel=True, initial=False)),
        'five chunks, N of 17 in a tile of 32, three heads per group':
            ((1, 70, 3, 2, 17, 1), 16, {}),
    }

    @pytest.mark.parametrize('case', list(CASES))
    def test_triton_matches_the_recurrence(case):
        shape, chunk, input_options = CASES[case]
        inputs = make_inputs(*shape, **input_options)
        got = run_with_grads(inputs, 'triton', chunk_size=chunk, dt_softplus=True)
        want = run_with_grads(inputs, 'reference', chunk_size=chunk, dt_softplus=True)
        assert_same_run(got, want)

    def test_triton_without_D_bias_or_softplus_and_a_loss_on_y_only():
        inputs = make_inputs(2, 20, 2, 3, 4, 2, bias=False)
        inputs['D'] = None
        # |dt| as the step: without softplus a negative step would grow the state.
        inputs['dt'] = inputs['dt'].abs()
        grads = {}
        for backend in ('triton', 'reference'):
            leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None)
                      for k, v in inputs.items()}
            y = vmamba_kernels.ssd_scan(**leaves, chunk_size=16, backend=backend)
            (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
            grads[backend] = (y, {k: v.grad for k, v in leaves.items() if v is not None})
        torch.testing.assert_close(grads['triton'][0], grads['reference'][0])
        for name, want in grads['reference'][1].items():
            torch.testing.assert_close(grads['triton'][1][name], want, rtol=1e-4, atol=1e-4,
                                       msg=f'gradient of {name}')

    @pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
    def test_triton_takes_half_inputs(dtype):
        inputs = make_inputs(1, 18, 2, 4, 3, 1, dtype=dtype)
        got = run_with_grads(inputs, 'triton', chunk_size=16, dt_softplus=True)
        want = run_with_grads(inputs, 'reference', chunk_size=16, dt_softplus=True)
        assert got[0].dtype == dtype
        tolerance = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=3e-3,
                                                                                     atol=3e-3)
        assert_same_run(got, want, **tolerance)

    def _op_args(inputs, with_options):
        leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None)
                  for k, v in inputs.items()}
        if not with_options:
            leaves['D'] = leaves['dt_bias'] = leaves['initial_states'] = None
        return [leaves[k] for k in ('x', 'dt', 'A', 'B', 'C', 'D', 'dt_bias', 'initial_states')]

    @pytest.mark.parametrize('with_options', [True, False], ids=['D_bias_initial', 'plain'])
    def test_opcheck_ssd_scan_triton(with_options):
        inputs = make_inputs(1, 5, 2, 2, 3, 1)
        args = _op_args(inputs, with_options)
        torch.library.opcheck(ssd_scan_triton_forward, (*args, 4, True))

    @pytest.mark.parametrize('with_options', [True, False], ids=['D_bias_initial', 'plain'])
    def test_opcheck_ssd_scan_triton_backward(with_options):
        inputs = make_inputs(1, 5, 2, 2, 3, 1)
        args = [t.detach() if t is not None else None for t in _op_args(inputs, with_options)]
        grad_y, grad_final = torch.randn(1, 5, 2, 2), torch.randn(1, 2, 2, 3)
        torch.library.opcheck(ssd_scan_triton_backward, (*args, grad_y, grad_final, 4, True))

    def test_the_counter_counts_the_triton_op_by_the_rule():
        inputs = make_inputs(1, 20, 2, 4, 8, 1)
        with FlopCounterMode(display=False) as counter:
            ssd_scan_triton_forward(*_op_args(inputs, True), 8, True)
        assert counter.get_total_flops() == 2 * ssd_scan_macs(1, 20, 2, 4, 8, 1, 8)
