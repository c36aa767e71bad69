"""The Triton SSD scan on the CPU, under TRITON_INTERPRET=1: its custom ops pass opcheck, and it
agrees with the sequential reference in value, final states and gradients, and carries its FLOP
rule.

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

    from tests.kernels.test_ssd_scan import assert_same_run, make_inputs, run_with_grads
    from vmamba_kernels.ssd_scan import ssd_scan_macs
    from vmamba_kernels.ssd_scan.triton import ssd_scan_triton_forward

    CASES = {
        # (batch, L, heads, headdim, N, groups), chunk, input options
        'two kernel chunks, the last padded, groups': ((2, 21, 4, 3, 5, 2), 8, {}),
        'headdim in two blocks, D per channel, no initial states':
            ((1, 9, 2, 70, 3, 1), 64, dict(D_per_channel=True, initial=False)),
    }

    @pytest.mark.parametrize('case', list(CASES))
    def test_triton_matches_the_recurrence(case):
        shape, chunk, input_options = CASES[case]
        inputs = make_inputs(*shape, **input_options)
        got = run_with_grads(inputs, 'triton', chunk_size=chunk, dt_softplus=True)
        want = run_with_grads(inputs, 'reference', chunk_size=chunk, dt_softplus=True)
        assert_same_run(got, want)

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
        # AOT dispatch with dynamic shapes traces the backward, which is the torch form:
        # test_ssd_scan.py compiles that with dynamic lengths already, at half the cost.
        torch.library.opcheck(ssd_scan_triton_forward, (*args, 4, True), test_utils=(
            'test_schema', 'test_autograd_registration', 'test_faketensor'))

    def test_the_counter_counts_the_triton_op_by_the_rule():
        inputs = make_inputs(1, 20, 2, 4, 8, 1)
        with FlopCounterMode(display=False) as counter:
            ssd_scan_triton_forward(*_op_args(inputs, True), 8, True)
        assert counter.get_total_flops() == 2 * ssd_scan_macs(1, 20, 2, 4, 8, 1, 8)
