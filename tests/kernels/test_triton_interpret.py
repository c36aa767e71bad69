"""The Triton kernels on the CPU, under TRITON_INTERPRET=1: their custom ops pass opcheck and
agree with the sequential reference and with the route tables of ``routes.py``.

Triton decides at import time whether it interprets, so the plain test run re-runs this file in a
child process with the variable set; the tests proper only run there. The interpreter is slow:
shapes are small, yet cross a chunk boundary, use groups, and leave odd maps.
"""
import pytest
import torch

from tests.kernels.interpreter import INTERPRETING, run_under_the_interpreter

if not INTERPRETING:

    def test_triton_kernels_under_the_interpreter():
        run_under_the_interpreter(__file__)

else:
    import vmamba_kernels
    from tests.kernels.scan_inputs import assert_close_scaled, input_list, pixel_major_inputs
    from vmamba_kernels.add_layer_norm.triton import add_layer_norm_backward_op, add_layer_norm_op
    from vmamba_kernels.cross_scan.triton import cross_merge_op, cross_scan_op
    from tests.kernels.oracles import pixel_major_low_rank_reference
    from vmamba_kernels.cross_selective_scan.triton import (cross_selective_scan_backward_op,
                                                            cross_selective_scan_op, tiling)
    from vmamba_kernels.routes import NUM_ROUTES, SCAN_ORDERS, route_pixels, route_table
    from vmamba_kernels.selective_scan.reference import selective_scan_reference
    from vmamba_kernels.selective_scan.triton import (selective_scan_triton_backward,
                                                      selective_scan_triton_forward)

    # (batch, dim, L, N, groups): one token, a chunk boundary (L > chunk), grouped B/C,
    # d_state 64, no D/bias.
    SHAPES = [(1, 4, 1, 1, 1), (2, 8, 37, 4, 2), (1, 8, 130, 3, 4), (1, 2, 20, 64, 1)]
    # Odd maps, a single row and a single column: transposes and reversals that a square hides.
    MAP_SIZES = [(3, 5), (1, 7), (7, 1)]


    def _run(inputs, backend, with_skip=True):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        D, bias = (leaves[5], leaves[6]) if with_skip else (None, None)
        y = vmamba_kernels.selective_scan(*leaves[:5], D=D, delta_bias=bias, delta_softplus=True,
                                          out_dtype=torch.float32, backend=backend)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        return y, [t.grad for t in leaves]



    # --- torch.library.opcheck: schema, fake (meta) implementation, autograd registration, and
    # --- AOT dispatch with dynamic shapes, for every Triton operator.

    def _leaves(tensors):
        return [t.detach().clone().requires_grad_() if t is not None and t.is_floating_point()
                else t for t in tensors]

    @pytest.mark.parametrize('with_skip', [True, False], ids=['D_bias', 'plain'])
    def test_opcheck_selective_scan_forward(with_skip):
        u, delta, A, B, C, D, bias = _leaves(input_list(1, 2, 5, 2, 1, torch.float32))
        if not with_skip:
            D = bias = None
        torch.library.opcheck(selective_scan_triton_forward,
                              (u, delta, A, B, C, D, bias, with_skip))

    def test_opcheck_selective_scan_backward():
        inputs = input_list(1, 4, 5, 2, 2, torch.float32)
        _, states = selective_scan_triton_forward(*inputs, True)
        grad_y = torch.randn(1, 4, 5, generator=torch.Generator().manual_seed(1))
        torch.library.opcheck(selective_scan_triton_backward, (*inputs, states, grad_y, True))

    def test_opcheck_cross_scan_and_merge():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 3, 5, generator=gen, requires_grad=True)
        torch.library.opcheck(cross_scan_op, (x, 'cross', True))
        routes = torch.randn(2, NUM_ROUTES, 3, 15, generator=gen, requires_grad=True)
        torch.library.opcheck(cross_merge_op, (routes, 3, 5, 'bidirectional', False))

    def test_opcheck_fused_cross_selective_scan():
        # Odd channels: a masked channel block.
        inputs = _leaves(pixel_major_inputs(channels=3, height=2, width=3, rank=1, state=2))
        pixels = route_table('cross', 2, 3, 'cpu')
        torch.library.opcheck(cross_selective_scan_op, (*inputs, pixels))
        _, states = cross_selective_scan_op(*inputs, pixels)
        grad_y = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(1))
        torch.library.opcheck(cross_selective_scan_backward_op,
                              (*[t.detach() for t in inputs], pixels, states, grad_y))

    # --- Values and gradients against the sequential reference.

    @pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'b{}d{}L{}N{}G{}'.format(*s))
    def test_triton_forward_and_gradients(shape):
        inputs = input_list(*shape, torch.float32)
        with_skip = shape[3] != 64
        ref, ref_grads = _run(inputs, 'reference', with_skip)
        out, grads = _run(inputs, 'triton', with_skip)
        assert_close_scaled(out, ref, 1e-4)
        for grad, ref_grad in zip(grads, ref_grads):
            assert_close_scaled(grad, ref_grad, 2e-4)

    @pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
    def test_triton_half_inputs(dtype):
        inputs = input_list(2, 8, 37, 4, 2, dtype)
        ref, _ = _run([t.float() for t in inputs], 'reference')
        out, grads = _run(inputs, 'triton')
        assert out.dtype == torch.float32
        assert_close_scaled(out, ref, 1e-4)
        assert grads[0].dtype == dtype  # gradients come back in the input's dtype

    @pytest.mark.parametrize('arch', [
        dict(depths=[1], dims=8, ssm_d_state=2, ssm_ratio=1.0, mlp_ratio=0.0),
        # VMamba-T's kind of block: channel-first maps, N = 1, an MLP after the fused add + norm.
        dict(depths=[2], dims=8, ssm_d_state=1, ssm_ratio=1.0, mlp_ratio=2.0, norm_layer='ln2d',
             forward_type='v05_noz', ssm_conv_bias=False),
    ], ids=['vanilla-like', 'v2-like'])
    def test_triton_in_the_model(arch):
        from vmamba_mm.models import VSSM
        torch.manual_seed(0)
        ref_model = VSSM(arch, scan_backend='reference')
        tri_model = VSSM(arch, scan_backend='triton')
        tri_model.load_state_dict(ref_model.state_dict())
        x = torch.randn(1, 3, 20, 12)
        outs = [model(x)[0] for model in (ref_model, tri_model)]
        assert_close_scaled(outs[1], outs[0], 1e-4)
        for out in outs:
            out.sum().backward()
        for ref_param, tri_param in zip(ref_model.parameters(), tri_model.parameters()):
            assert_close_scaled(tri_param.grad, ref_param.grad, 2e-4)

    # --- The fused residual add + LayerNorm against its tensor-op reference.

    @pytest.mark.parametrize('channel_first, shape', [(False, (2, 3, 5, 24)), (True, (2, 20, 3, 5)),
                                                      (False, (7, 96))],
                             ids=['BHWC', 'BCHW', 'rows'])
    def test_add_layer_norm_values_and_gradients(channel_first, shape):
        gen = torch.Generator().manual_seed(0)
        channels = shape[1] if channel_first else shape[-1]
        inputs = [torch.randn(*shape, generator=gen) * 3 + 1, torch.randn(*shape, generator=gen),
                  torch.randn(channels, generator=gen), torch.randn(channels, generator=gen)]
        grads = [torch.randn(*shape, generator=gen) for _ in range(2)]
        results = []
        for backend in ('reference', 'triton'):
            leaves = _leaves(inputs)
            total, normed = vmamba_kernels.add_layer_norm(*leaves, 1e-5, channel_first,
                                                          backend=backend)
            torch.autograd.backward([total, normed], grads)
            results.append([total, normed] + [leaf.grad for leaf in leaves])
        for actual, expected in zip(results[1], results[0]):
            assert_close_scaled(actual, expected, 1e-5)

    def test_add_layer_norm_keeps_channels_last_maps_so():
        # Channel-first maps that are channels-last in memory: read as rows, returned alike.
        gen = torch.Generator().manual_seed(2)
        x, residual = (torch.randn(2, 6, 3, 4, generator=gen).to(
            memory_format=torch.channels_last) for _ in range(2))
        weight, bias = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
        outs = vmamba_kernels.add_layer_norm(x, residual, weight, bias, 1e-5, True,
                                             backend='triton')
        refs = vmamba_kernels.add_layer_norm(x, residual, weight, bias, 1e-5, True,
                                             backend='reference')
        for out, ref in zip(outs, refs):
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert_close_scaled(out, ref, 1e-5)

    def test_add_layer_norm_bfloat16_and_opcheck():
        gen = torch.Generator().manual_seed(1)
        x, residual = (torch.randn(2, 4, 3, 16, generator=gen) for _ in range(2))
        weight, bias = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
        total, normed = vmamba_kernels.add_layer_norm(x.bfloat16(), residual.bfloat16(), weight,
                                                      bias, backend='triton')
        ref_total, ref_normed = vmamba_kernels.add_layer_norm(
            x.bfloat16(), residual.bfloat16(), weight, bias, backend='reference')
        assert total.dtype == normed.dtype == torch.bfloat16
        # The interpreter truncates float32 -> bfloat16 (GPUs round to nearest, as torch does):
        # one bfloat16 step apart at most here; test_cuda.py checks the sum bit for bit.
        assert_close_scaled(total, ref_total, 1e-2)
        assert_close_scaled(normed, ref_normed, 2e-2)
        leaves = _leaves([x, residual, weight, bias])
        torch.library.opcheck(add_layer_norm_op, (*leaves, 1e-5, False))
        total, _, mean, rstd = add_layer_norm_op(x, residual, weight, bias, 1e-5, False)
        torch.library.opcheck(add_layer_norm_backward_op,
                              (total, weight, mean, rstd, torch.randn_like(x),
                               torch.randn_like(x), False))

    @pytest.mark.parametrize('order', SCAN_ORDERS)
    @pytest.mark.parametrize('height, width, state', [(5, 7, 1), (3, 4, 3)])
    def test_triton_fused_cross_scan_for_inference(order, height, width, state):
        gen = torch.Generator().manual_seed(height)
        channels, rank = 6, 2
        x = torch.randn(2, channels, height, width, generator=gen)
        args = (torch.randn(NUM_ROUTES, rank + 2 * state, channels, generator=gen) * 0.5,
                torch.randn(NUM_ROUTES, channels, rank, generator=gen) * 0.5,
                -torch.rand(NUM_ROUTES * channels, state, generator=gen) - 0.1,
                torch.randn(NUM_ROUTES * channels, generator=gen),
                torch.randn(NUM_ROUTES * channels, generator=gen) * 0.5)
        ref = vmamba_kernels.cross_selective_scan(x, *args, order=order, backend='reference')
        with torch.no_grad():
            out = vmamba_kernels.cross_selective_scan(x, *args, order=order, backend='triton')
        assert_close_scaled(out, ref, 1e-4)

    @pytest.mark.parametrize('order, channels, height, width, rank, state, skip', [
        # N padded to 4, an odd map walked in every order.
        *[(order, 4, 3, 5, 2, 3, True) for order in SCAN_ORDERS],
        ('cross', 6, 1, 7, 3, 1, False),  # a single row, a masked channel block, no D or bias
        ('cross', 64, 5, 9, 2, 1, True),  # VMamba's N = 1 tiling: 32-step chunks, 45 steps
    ])
    def test_fused_op_values_and_gradients_match_the_reference_scan(order, channels, height,
                                                                    width, rank, state, skip):
        # The kernel pair against autograd through pixel_major_low_rank_reference on the
        # sequential scan: the output and the gradient of every input.
        _, _, chunk = tiling(channels, state)
        assert channels != 64 or chunk < height * width  # the 64-channel case crosses chunks
        inputs = pixel_major_inputs(channels, height, width, rank, state, seed=height)
        if not skip:
            inputs[4:] = [None, None]
        pixels = route_table(order, height, width, 'cpu')
        grad = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(3))
        ref_leaves, leaves = _leaves(inputs), _leaves(inputs)
        ref = pixel_major_low_rank_reference(*ref_leaves, pixels, selective_scan_reference)
        out, _ = cross_selective_scan_op(*leaves, pixels)
        assert_close_scaled(out, ref, 1e-4)
        ref.backward(grad)
        out.backward(grad)
        for leaf, ref_leaf in zip(leaves, ref_leaves):
            if ref_leaf is not None:
                assert_close_scaled(leaf.grad, ref_leaf.grad, 2e-4)

    # --- Routes: the Triton cross-scan/merge follow routes.route_pixels.

    def _gather_oracle(x, order, channel_first):
        """Routes read pixel by pixel from the route table: (B, routes, C, L)."""
        maps = x if channel_first else x.permute(0, 3, 1, 2)
        flat = maps.flatten(2)  # (B, C, L) in row-major pixel order
        pixels = route_pixels(order, maps.shape[2], maps.shape[3])
        return torch.stack([flat[..., pixels[route]] for route in range(pixels.shape[0])], 1)

    def _merge_oracle(routes, height, width, order, channel_first):
        """Each route's step t added into its pixel route_pixels[route, t]."""
        pixels = route_pixels(order, height, width)
        merged = routes.new_zeros(routes.shape[0], routes.shape[2], height * width)
        for route in range(pixels.shape[0]):
            merged.index_add_(2, pixels[route], routes[:, route])
        merged = merged.unflatten(2, (height, width))
        return merged if channel_first else merged.permute(0, 2, 3, 1)

    @pytest.mark.parametrize('order', SCAN_ORDERS)
    @pytest.mark.parametrize('channel_first', [True, False], ids=['BCHW', 'BHWC'])
    def test_triton_cross_scan_and_merge_follow_the_route_table(order, channel_first):
        gen = torch.Generator().manual_seed(0)
        for height, width in MAP_SIZES:
            shape = (2, 3, height, width) if channel_first else (2, height, width, 3)
            x = torch.randn(*shape, generator=gen, requires_grad=True)
            routes = vmamba_kernels.cross_scan(x, order, channel_first, backend='triton')
            assert routes.shape == (2, NUM_ROUTES, 3, height * width)
            torch.testing.assert_close(routes, _gather_oracle(x.detach(), order, channel_first),
                                       rtol=0, atol=0)
            ys = torch.randn(routes.shape, generator=gen, requires_grad=True)
            merged = vmamba_kernels.cross_merge(ys, height, width, order, channel_first,
                                                backend='triton')
            torch.testing.assert_close(
                merged, _merge_oracle(ys.detach(), height, width, order, channel_first))
            # Each is the other's adjoint: <scan(x), g> = <x, merge(g)> for the backward passes.
            grad_routes = torch.randn(routes.shape, generator=gen)
            routes.backward(grad_routes)
            torch.testing.assert_close(
                x.grad, _merge_oracle(grad_routes, height, width, order, channel_first))
            grad_map = torch.randn(merged.shape, generator=gen)
            merged.backward(grad_map)
            torch.testing.assert_close(ys.grad, _gather_oracle(grad_map, order, channel_first),
                                       rtol=0, atol=0)
