"""The Triton 2D scan on the CPU, under TRITON_INTERPRET=1: its custom ops pass opcheck, and its
value and every gradient agree with the sequential 2D reference.

Triton decides at import time whether it interprets, so the plain test run re-runs this file in a
child process with the variable set; the tests proper only run there. The interpreter runs an
associative scan element by element, so its cost grows with channels x N x padded width x height:
grids are small, yet a single row, a single column, odd and non-square ones, and ones that cross
the kernel's column tiles and checkpoint blocks of rows.
"""
import pytest
import torch

from tests.kernels.interpreter import INTERPRETING, run_under_the_interpreter

if not INTERPRETING:

    def test_triton_2d_scan_under_the_interpreter():
        run_under_the_interpreter(__file__)

else:
    import vmamba_kernels
    from tests.kernels.scan_inputs import assert_close_scaled, make_inputs
    from vmamba_kernels.selective_scan_2d.triton import (grid_layout,
                                                         selective_scan_2d_triton_backward,
                                                         selective_scan_2d_triton_forward)

    NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')

    def _run(inputs, backend, height, width, with_skip=True, softplus=True,
             out_dtype=torch.float32):
        """y and the gradients of (u, delta, A, B, C, D, delta_bias) of the public entry."""
        leaves = {k: inputs[k].detach().clone().requires_grad_() for k in NAMES}
        y = vmamba_kernels.selective_scan_2d(
            leaves['u'], leaves['delta'], leaves['A'], leaves['B'], leaves['C'],
            D=leaves['D'] if with_skip else None,
            delta_bias=leaves['delta_bias'] if with_skip else None, delta_softplus=softplus,
            height=height, width=width, out_dtype=out_dtype, backend=backend)
        # A ramp, not ones: every position's gradient weighs differently.
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        return y, [leaves[k].grad for k in NAMES]

    def _check_against_reference(inputs, height, width, with_skip=True, softplus=True,
                                 value_rtol=1e-4, grad_rtol=2e-4):
        ref, ref_grads = _run(inputs, 'reference', height, width, with_skip, softplus)
        out, grads = _run(inputs, 'triton', height, width, with_skip, softplus)
        assert out.dtype == torch.float32
        assert_close_scaled(out, ref, value_rtol)
        for name, grad, ref_grad in zip(NAMES, grads, ref_grads):
            if not with_skip and name in ('D', 'delta_bias'):
                assert grad is None
                continue
            assert grad.dtype == ref_grad.dtype, name
            try:
                assert_close_scaled(grad, ref_grad, grad_rtol)
            except AssertionError as error:
                raise AssertionError(f'gradient of {name}: {error}') from None

    # --- torch.library.opcheck: schema, fake implementation, autograd registration, and AOT
    # --- dispatch with dynamic shapes, for both operators.

    def _op_inputs(batch=1, dim=2, height=2, width=3, state=2, groups=1):
        inputs = make_inputs(batch, dim, height * width, state, groups, decay=1.0, min_decay=0.1)
        return [inputs[k].requires_grad_() for k in NAMES]

    @pytest.mark.parametrize('with_skip', [True, False], ids=['D_bias', 'plain'])
    def test_opcheck_forward(with_skip):
        u, delta, A, B, C, D, bias = _op_inputs()
        if not with_skip:
            D = bias = None
        torch.library.opcheck(selective_scan_2d_triton_forward,
                              (u, delta, A, B, C, D, bias, with_skip, 2, 3))

    def test_opcheck_backward():
        inputs = [t.detach() for t in _op_inputs(dim=4, groups=2)]
        _, checkpoints = selective_scan_2d_triton_forward(*inputs, True, 2, 3)
        grad_y = torch.randn(1, 4, 6, generator=torch.Generator().manual_seed(1))
        torch.library.opcheck(selective_scan_2d_triton_backward,
                              (*inputs, checkpoints, grad_y, True, 2, 3))

    # --- Values and every gradient against the sequential reference.

    # (height, width, N, groups, dim, batch, with D and bias, softplus)
    CASES = {
        '1x7_N4': (1, 7, 4, 1, 2, 2, True, True),
        '7x1_N1_nosoftplus': (7, 1, 1, 1, 2, 2, True, False),
        '3x5_N3_G2': (3, 5, 3, 2, 4, 2, True, True),  # N padded to 4; B, C grouped
        '5x3_N4_G2_plain': (5, 3, 4, 2, 4, 2, False, False),
        '4x4_N1_plain': (4, 4, 1, 1, 2, 2, False, True),
        '7x2_N2': (7, 2, 2, 1, 2, 1, True, True),
        # One column tile, two checkpoint blocks (the second of two rows): the gamma carried in
        # registers across blocks.
        '18x5_N2': (18, 5, 2, 1, 2, 1, True, True),
        # Column tiles of 32 for N = 16 (two of them); one channel per backward block, so dB
        # and dC are summed over blocks.
        '3x37_N16': (3, 37, 16, 1, 2, 1, True, True),
        # Both: tiles of 128 for N = 1 (two), blocks of 16 rows (two, the second partial).
        '19x133_N1': (19, 133, 1, 1, 2, 1, True, True),
    }

    @pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())
    def test_values_and_gradients(case):
        height, width, state, groups, dim, batch, with_skip, softplus = case
        inputs = make_inputs(batch, dim, height * width, state, groups, seed=height + width)
        _check_against_reference(inputs, height, width, with_skip, softplus)

    def test_the_large_cases_cross_tiles_and_blocks():
        # What the cases above claim about the kernel's layout: (state, H, W) -> (tiles, blocks).
        for name, tiles, blocks in (('18x5_N2', 1, 2), ('3x37_N16', 2, 1), ('19x133_N1', 2, 2)):
            height, width, state = CASES[name][:3]
            layout = grid_layout(state, height, width)
            assert (layout[2], layout[4]) == (tiles, blocks), name

    @pytest.mark.parametrize('height, width, state, groups', [(5, 7, 4, 2), (3, 133, 1, 1)],
                             ids=['5x7_N4_G2', '3x133_N1_two_tiles'])
    def test_strong_decay(height, width, state, groups):
        # Decays down to exp(-30 delta): products underflow to zero, within a tile and across
        # the carry between tiles, and no gradient may become NaN.
        inputs = make_inputs(2, 4, height * width, state, groups, seed=3, decay=30.0,
                             min_decay=1.0)
        _check_against_reference(inputs, height, width)

    @pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
    def test_half_inputs(dtype):
        height, width = 3, 5
        inputs = make_inputs(2, 4, height * width, 4, 2, dtype, seed=5)
        ref, ref_grads = _run(inputs, 'reference', height, width)
        out, grads = _run(inputs, 'triton', height, width)
        assert out.dtype == torch.float32  # accumulated and returned in float32
        assert_close_scaled(out, ref, 1e-4)
        for name, grad, ref_grad in zip(NAMES, grads, ref_grads):
            # Both computed in float32; those of half inputs rounded once to their dtype.
            assert grad.dtype == ref_grad.dtype, name
            assert_close_scaled(grad, ref_grad, 1e-2)
        default, _ = _run(inputs, 'triton', height, width, out_dtype=None)
        assert default.dtype == dtype  # out_dtype defaults to u's dtype

    def test_compiles_whole_with_autograd():
        # The ops as single graph nodes: fullgraph tracing through the fake implementations and
        # the registered autograd gives eager's values and gradients.
        height, width = 3, 4
        inputs = make_inputs(1, 2, height * width, 2, 1, seed=7)

        def scan(u, delta, A, B, C, D, delta_bias):
            return vmamba_kernels.selective_scan_2d(u, delta, A, B, C, D=D, delta_bias=delta_bias,
                                                    delta_softplus=True, height=height,
                                                    width=width, backend='triton')

        results = []
        for fn in (scan, torch.compile(scan, backend='aot_eager', fullgraph=True)):
            leaves = [inputs[k].detach().clone().requires_grad_() for k in NAMES]
            y = fn(*leaves)  # the eager call first: dispatch logs its choice once, eagerly
            y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
            results.append([y] + [leaf.grad for leaf in leaves])
        for compiled, eager in zip(*reversed(results)):
            torch.testing.assert_close(compiled, eager)
