"""The Triton kernels on the CPU, under TRITON_INTERPRET=1, against the sequential reference.

Triton decides at import time whether it interprets, so the plain test run re-runs this file in a
child process with the variable set; the tests proper only run there.
"""
import os
import subprocess
import sys

import pytest
import torch

INTERPRETING = os.environ.get('TRITON_INTERPRET') == '1'

if not INTERPRETING:

    def test_triton_kernels_under_the_interpreter():
        pytest.importorskip('triton')
        env = dict(os.environ, TRITON_INTERPRET='1')
        child = subprocess.run(
            [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', __file__], env=env,
            capture_output=True, text=True, timeout=900)
        assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-3000:]
        assert ' passed' in child.stdout and 'skipped' not in child.stdout.splitlines()[-1]

else:
    import vmamba_kernels

    # (batch, dim, L, N, groups): one token, a chunk boundary (L > chunk), grouped B/C,
    # d_state 64, no D/bias.
    SHAPES = [(1, 4, 1, 1, 1), (2, 8, 37, 4, 2), (1, 8, 130, 3, 4), (1, 2, 20, 64, 1)]

    def _inputs(batch, dim, length, state, groups, dtype, seed=0):
        gen = torch.Generator().manual_seed(seed)
        return [
            torch.randn(batch, dim, length, generator=gen).to(dtype),
            (torch.randn(batch, dim, length, generator=gen) * 0.5).to(dtype),
            -torch.rand(dim, state, generator=gen) - 0.1,
            torch.randn(batch, groups, state, length, generator=gen).to(dtype),
            torch.randn(batch, groups, state, length, generator=gen).to(dtype),
            torch.randn(dim, generator=gen),
            torch.randn(dim, generator=gen) * 0.5,
        ]

    def _run(inputs, backend, with_skip=True):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        D, bias = (leaves[5], leaves[6]) if with_skip else (None, None)
        y = vmamba_kernels.selective_scan(*leaves[:5], D=D, delta_bias=bias, delta_softplus=True,
                                          out_dtype=torch.float32, backend=backend)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        return y, [t.grad for t in leaves]

    def _close(actual, expected, rtol):
        if expected is None:
            assert actual is None or not actual.abs().any()
            return
        scale = expected.abs().max().clamp(min=1.0)
        err = (actual.float() - expected.float()).abs().max()
        assert err <= rtol * scale, f'error {err:.3g} at scale {scale:.3g}'

    @pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'b{}d{}L{}N{}G{}'.format(*s))
    def test_triton_forward_and_gradients(shape):
        inputs = _inputs(*shape, torch.float32)
        with_skip = shape[3] != 64
        ref, ref_grads = _run(inputs, 'reference', with_skip)
        out, grads = _run(inputs, 'triton', with_skip)
        _close(out, ref, 1e-4)
        for grad, ref_grad in zip(grads, ref_grads):
            _close(grad, ref_grad, 2e-4)

    @pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
    def test_triton_half_inputs(dtype):
        inputs = _inputs(2, 8, 37, 4, 2, dtype)
        ref, _ = _run([t.float() for t in inputs], 'reference')
        out, grads = _run(inputs, 'triton')
        assert out.dtype == torch.float32
        _close(out, ref, 1e-4)
        assert grads[0].dtype == dtype  # gradients come back in the input's dtype

    def test_triton_in_the_model():
        from vmamba_mm.models import VSSM
        torch.manual_seed(0)
        arch = dict(depths=[1], dims=8, ssm_d_state=2, ssm_ratio=1.0, mlp_ratio=0.0)
        ref_model = VSSM(arch, scan_backend='reference')
        tri_model = VSSM(arch, scan_backend='triton')
        tri_model.load_state_dict(ref_model.state_dict())
        x = torch.randn(1, 3, 20, 12)
        for model in (ref_model, tri_model):
            model(x)[0].sum().backward()
        for (name, a), (_, b) in zip(ref_model.named_parameters(), tri_model.named_parameters()):
            _close(b.grad, a.grad, 2e-4)

    @pytest.mark.parametrize('order', ['cross', 'bidirectional', 'unidirectional'])
    @pytest.mark.parametrize('height, width, state', [(5, 7, 1), (3, 4, 3)])
    def test_triton_fused_cross_scan_for_inference(order, height, width, state):
        gen = torch.Generator().manual_seed(height)
        channels, rank = 6, 2
        x = torch.randn(2, channels, height, width, generator=gen)
        args = (torch.randn(4, rank + 2 * state, channels, generator=gen) * 0.5,
                torch.randn(4, channels, rank, generator=gen) * 0.5,
                -torch.rand(4 * channels, state, generator=gen) - 0.1,
                torch.randn(4 * channels, generator=gen),
                torch.randn(4 * channels, generator=gen) * 0.5)
        ref = vmamba_kernels.cross_selective_scan(x, *args, order=order, backend='reference')
        with torch.no_grad():
            out = vmamba_kernels.cross_selective_scan(x, *args, order=order, backend='triton')
        _close(out, ref, 1e-4)

    @pytest.mark.parametrize('order', ['cross', 'bidirectional', 'unidirectional'])
    @pytest.mark.parametrize('channel_first', [True, False])
    def test_triton_cross_scan_and_merge(order, channel_first):
        from vmamba_kernels import cross_merge, cross_scan
        x = torch.randn(2, 3, 5, 7)
        layout = x if channel_first else x.permute(0, 2, 3, 1).contiguous()
        leaf_t = layout.clone().requires_grad_()
        leaf_r = layout.clone().requires_grad_()
        routes = cross_scan(leaf_t, order, channel_first, implementation='triton')
        expected = cross_scan(leaf_r, order, channel_first, implementation='torch')
        torch.testing.assert_close(routes, expected)
        grad = torch.randn_like(routes)
        routes.backward(grad)
        expected.backward(grad)
        torch.testing.assert_close(leaf_t.grad, leaf_r.grad)
        ys = torch.randn(2, 4, 3, 35, requires_grad=True)
        merged = cross_merge(ys, 5, 7, order, channel_first, implementation='triton')
        torch.testing.assert_close(merged, cross_merge(ys, 5, 7, order, channel_first,
                                                       implementation='torch'))
        merged.backward(torch.ones_like(merged))
        torch.testing.assert_close(ys.grad, torch.ones_like(ys))
