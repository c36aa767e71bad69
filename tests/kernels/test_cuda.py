"""On a GPU: the model, the scan backends and their custom ops on CUDA tensors (skipped without
CUDA; tests/kernels/test_cuda_build.py checks on the CPU what can be checked without a GPU)."""
import importlib.util

import pytest
import torch

import vmamba_kernels
from vmamba_kernels.routes import NUM_ROUTES, SCAN_ORDERS, route_pixels, route_table
from tests.kernels.scan_inputs import assert_close_scaled, input_list, pixel_major_inputs
from vmamba_mm.models import VSSM

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU'),
]


GPU_BACKENDS = [b for b in ('cuda', 'triton', 'torch')
                if b in vmamba_kernels.available_backends()]



def _run(inputs, backend, grad_seed=1):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y = vmamba_kernels.selective_scan(*leaves[:5], D=leaves[5], delta_bias=leaves[6],
                                      delta_softplus=True, out_dtype=torch.float32,
                                      backend=backend)
    gen = torch.Generator().manual_seed(grad_seed)
    y.backward(torch.randn(y.shape, generator=gen).to(y.device))
    return y, [t.grad for t in leaves]



@pytest.mark.parametrize('backend', GPU_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('shape', [(2, 64, 1000, 4, 4), (1, 8, 1, 1, 1), (1, 16, 77, 64, 2),
                                   (2, 12, 300, 16, 3)])
def test_gpu_backends_against_the_reference(backend, dtype, shape):
    cpu = input_list(*shape, dtype)
    ref, ref_grads = _run([t.float() for t in cpu], 'reference')
    out, grads = _run([t.cuda() for t in cpu], backend)
    assert out.dtype == torch.float32 and out.is_cuda
    assert_close_scaled(out, ref, 1e-4)
    for grad, ref_grad in zip(grads, ref_grads):
        # Half-precision inputs get half-precision gradients, rounded accordingly.
        assert_close_scaled(grad, ref_grad, 1e-4 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize('backend', [b for b in GPU_BACKENDS if b != 'torch'])
def test_long_sequences_and_deterministic_backward(backend):
    # A 1024 x 1024 image gives L = 65,536 at stage 1; the vectorised torch path is the oracle.
    inputs = input_list(1, 8, 65536, 4, 2, torch.float32, device='cuda')
    out, grads = _run(inputs, backend)
    ref, ref_grads = _run(inputs, 'torch')
    assert_close_scaled(out, ref, 1e-4)
    for grad, ref_grad in zip(grads, ref_grads):
        assert_close_scaled(grad, ref_grad, 1e-3)
    again, grads_again = _run(inputs, backend)
    assert torch.equal(out, again)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_again))


@pytest.mark.parametrize('backend', [b for b in ('triton', 'cuda')
                                     if b in vmamba_kernels.available_backends(
                                         'cross_selective_scan')])
@pytest.mark.parametrize('order', SCAN_ORDERS)
def test_fused_cross_scan_on_cuda(backend, order):
    gen = torch.Generator().manual_seed(0)
    channels, rank, state = 32, 2, 4
    x = torch.randn(2, channels, 9, 13, generator=gen)
    routes = NUM_ROUTES
    args = (torch.randn(routes, rank + 2 * state, channels, generator=gen) * 0.5,
            torch.randn(routes, channels, rank, generator=gen) * 0.5,
            -torch.rand(routes * channels, state, generator=gen) - 0.1,
            torch.randn(routes * channels, generator=gen),
            torch.randn(routes * channels, generator=gen))
    ref_leaves = [t.clone().requires_grad_() for t in (x, *args)]
    ref = vmamba_kernels.cross_selective_scan(*ref_leaves, order=order, backend='reference')
    with torch.no_grad():
        out = vmamba_kernels.cross_selective_scan(x.cuda(), *[a.cuda() for a in args],
                                                  order=order, backend=backend)
    assert_close_scaled(out, ref, 1e-4)
    # Training: the backend's own path under autograd, every input's gradient.
    leaves = [t.cuda().requires_grad_() for t in (x, *args)]
    out = vmamba_kernels.cross_selective_scan(*leaves, order=order, backend=backend)
    grad = torch.randn(ref.shape, generator=gen)
    ref.backward(grad)
    out.backward(grad.cuda())
    for leaf, ref_leaf in zip(leaves, ref_leaves):
        assert_close_scaled(leaf.grad, ref_leaf.grad, 2e-4)


@pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='Triton is not installed')
@pytest.mark.parametrize('channel_first', [False, True], ids=['BHWC', 'BCHW'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_add_layer_norm_on_cuda(channel_first, dtype):
    from vmamba_kernels.add_layer_norm.triton import add_layer_norm_backward_op, add_layer_norm_op
    gen = torch.Generator().manual_seed(0)
    shape = (4, 96, 14, 14) if channel_first else (4, 14, 14, 96)
    inputs = [torch.randn(*shape, generator=gen).to(dtype) for _ in range(2)] + \
        [torch.randn(96, generator=gen) for _ in range(2)]
    grads = [torch.randn(*shape, generator=gen).to(dtype) for _ in range(2)]
    results = []
    for backend, device in (('reference', 'cpu'), ('triton', 'cuda')):
        leaves = [t.to(device).requires_grad_() for t in inputs]
        outs = vmamba_kernels.add_layer_norm(*leaves, 1e-5, channel_first, backend=backend)
        torch.autograd.backward(outs, [g.to(device) for g in grads])
        results.append([*outs, *[leaf.grad for leaf in leaves]])
    assert torch.equal(results[1][0].cpu(), results[0][0])  # the sum, rounded alike
    for actual, expected in zip(results[1][1:], results[0][1:]):
        assert_close_scaled(actual, expected, 1e-5 if dtype == torch.float32 else 2e-2)
    leaves = [t.cuda().requires_grad_() for t in inputs]
    torch.library.opcheck(add_layer_norm_op, (*leaves, 1e-5, channel_first))
    total, _, mean, rstd = add_layer_norm_op(*[t.cuda() for t in inputs], 1e-5, channel_first)
    torch.library.opcheck(add_layer_norm_backward_op,
                          (total, inputs[2].cuda(), mean, rstd, *[g.cuda() for g in grads],
                           channel_first))


def test_automatic_choice_on_cuda_is_a_gpu_kernel():
    chosen, _ = vmamba_kernels.resolve('selective_scan', 'cuda')
    assert chosen.backend in ('cuda', 'triton')


@pytest.mark.parametrize('arch', ['tiny-s1l8', 'vanilla-tiny', '2dvmamba-tiny'])
def test_model_on_cuda_matches_cpu(arch):
    torch.manual_seed(0)
    model = VSSM(arch, out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(2, 3, 96, 80)
    # cuDNN convolutions default to TF32 (10-bit mantissa); compare in full float32.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            cpu = model(x)
            gpu = model.cuda()(x.cuda())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)


def test_training_step_on_cuda_under_amp():
    model = VSSM('tiny-s1l8', drop_path_rate=0.1).cuda().train()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3, 64, 64, device='cuda'))[0].float().square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('order', SCAN_ORDERS)
@pytest.mark.parametrize('channel_first', [True, False])
def test_cross_scan_and_merge_kernels_on_cuda(order, channel_first):
    x = torch.randn(2, 16, 9, 13, device='cuda')
    layout = x if channel_first else x.permute(0, 2, 3, 1).contiguous()
    leaf_k = layout.clone().requires_grad_()
    leaf_t = layout.clone().requires_grad_()
    routes = vmamba_kernels.cross_scan(leaf_k, order, channel_first)  # Triton on CUDA
    expected = vmamba_kernels.cross_scan(leaf_t, order, channel_first, backend='torch')
    torch.testing.assert_close(routes, expected)
    grad = torch.randn_like(routes)
    routes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(leaf_k.grad, leaf_t.grad)
    merged = vmamba_kernels.cross_merge(grad, 9, 13, order, channel_first)
    torch.testing.assert_close(merged, vmamba_kernels.cross_merge(grad, 9, 13, order,
                                                                  channel_first,
                                                                  backend='torch'))


@pytest.mark.parametrize('order', SCAN_ORDERS)
@pytest.mark.parametrize('channel_first', [True, False], ids=['BCHW', 'BHWC'])
@pytest.mark.parametrize('height, width', [(3, 5), (1, 7), (7, 1), (33, 70)])
def test_triton_routes_follow_the_route_table_on_cuda(order, channel_first, height, width):
    if 'triton' not in vmamba_kernels.available_backends('cross_scan'):
        pytest.skip('Triton is not available')
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 40, height, width, generator=gen)  # more channels than a block
    pixels = route_pixels(order, height, width)
    expected = torch.stack([maps.flatten(2)[..., pixels[r]] for r in range(NUM_ROUTES)], 1)
    x = maps if channel_first else maps.permute(0, 2, 3, 1).contiguous()
    routes = vmamba_kernels.cross_scan(x.cuda(), order, channel_first, backend='triton')
    torch.testing.assert_close(routes.cpu(), expected, rtol=0, atol=0)
    merged = torch.zeros(2, 40, height * width)
    for r in range(NUM_ROUTES):
        merged.index_add_(2, pixels[r], expected[:, r])
    merged = merged.unflatten(2, (height, width))
    out = vmamba_kernels.cross_merge(routes, height, width, order, channel_first,
                                     backend='triton')
    torch.testing.assert_close(out.cpu(), merged if channel_first else merged.permute(0, 2, 3, 1))


# --- torch.library.opcheck on CUDA tensors for the custom ops of the GPU backends. Forward ops get
# --- inputs that require grad, so their autograd registration is exercised too.

def _op_leaves(tensors):
    return [t.detach().clone().requires_grad_() if t is not None and t.is_floating_point()
            else t for t in tensors]


def _scan_ops(backend):
    if backend == 'cuda':
        from vmamba_kernels.selective_scan import cuda
        return cuda.selective_scan_cuda_forward, cuda.selective_scan_cuda_backward
    from vmamba_kernels.selective_scan import triton
    return triton.selective_scan_triton_forward, triton.selective_scan_triton_backward


@pytest.mark.parametrize('backend', [b for b in GPU_BACKENDS if b != 'torch'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('with_skip', [True, False], ids=['D_bias', 'plain'])
def test_opcheck_selective_scan_ops(backend, dtype, with_skip):
    forward, backward = _scan_ops(backend)
    u, delta, A, B, C, D, bias = input_list(2, 16, 45, 4, 2, dtype, device='cuda')
    if not with_skip:
        D = bias = None
    torch.library.opcheck(forward, (*_op_leaves((u, delta, A, B, C, D, bias)), with_skip))
    _, saved = forward(u, delta, A, B, C, D, bias, with_skip)
    grad_y = torch.randn(u.shape, device='cuda')
    torch.library.opcheck(backward, (u, delta, A, B, C, D, bias, saved, grad_y, with_skip))


@pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='Triton is not installed')
@pytest.mark.parametrize('order', SCAN_ORDERS)
def test_opcheck_triton_route_ops(order):
    from vmamba_kernels.cross_scan.triton import cross_merge_op, cross_scan_op
    from vmamba_kernels.cross_selective_scan.triton import (cross_selective_scan_backward_op,
                                                            cross_selective_scan_op)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 5, 7, generator=gen).cuda().requires_grad_()
    torch.library.opcheck(cross_scan_op, (x, order, True))
    routes = torch.randn(2, NUM_ROUTES, 8, 35, generator=gen).cuda().requires_grad_()
    torch.library.opcheck(cross_merge_op, (routes, 5, 7, order, False))
    inputs = [t.cuda() for t in pixel_major_inputs(channels=8, height=5, width=7, rank=2,
                                                    state=4)]
    pixels = route_table(order, 5, 7, 'cuda')
    torch.library.opcheck(cross_selective_scan_op, (*_op_leaves(inputs), pixels))
    _, states = cross_selective_scan_op(*inputs, pixels)
    torch.library.opcheck(cross_selective_scan_backward_op,
                          (*inputs, pixels, states, torch.randn_like(inputs[0])))


# ------------------------------------------------------------------------- the 2D scan (2DMamba)

GPU_2D_BACKENDS = [b for b in ('triton', 'torch')
                   if b in vmamba_kernels.available_backends('selective_scan_2d')]


def _run_2d(inputs, backend, height, width, grad_seed=1):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y = vmamba_kernels.selective_scan_2d(*leaves[:5], D=leaves[5], delta_bias=leaves[6],
                                         delta_softplus=True, height=height, width=width,
                                         out_dtype=torch.float32, backend=backend)
    gen = torch.Generator().manual_seed(grad_seed)
    y.backward(torch.randn(y.shape, generator=gen).to(y.device))
    return y, [t.grad for t in leaves]


@pytest.mark.parametrize('backend', GPU_2D_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
# (batch, dim, H, W, N, groups): VMamba-T stage 1 (56 x 56, N = 1), a grid wider than a tile and
# taller than a checkpoint block, N = 16, a row and a column.
@pytest.mark.parametrize('shape', [(2, 32, 56, 56, 1, 4), (1, 8, 37, 300, 4, 2),
                                   (1, 16, 20, 20, 16, 1), (1, 4, 1, 64, 2, 1),
                                   (1, 4, 64, 1, 2, 1)])
def test_gpu_2d_backends_against_the_reference(backend, dtype, shape):
    batch, dim, height, width, state, groups = shape
    cpu = input_list(batch, dim, height * width, state, groups, dtype)
    ref, ref_grads = _run_2d([t.float() for t in cpu], 'torch', height, width)
    out, grads = _run_2d([t.cuda() for t in cpu], backend, height, width)
    assert out.dtype == torch.float32 and out.is_cuda
    assert_close_scaled(out, ref, 1e-4)
    for grad, ref_grad in zip(grads, ref_grads):
        assert_close_scaled(grad, ref_grad, 1e-4 if dtype == torch.float32 else 1e-2)


@pytest.mark.skipif('triton' not in vmamba_kernels.available_backends('selective_scan_2d'),
                    reason='the triton backend of selective_scan_2d is unavailable here')
def test_triton_2d_scan_at_256_squared_is_deterministic():
    # A 1024 x 1024 image is a 256 x 256 grid at stage 1.
    inputs = input_list(1, 8, 256 * 256, 1, 2, torch.float32, device='cuda')
    out, grads = _run_2d(inputs, 'triton', 256, 256)
    ref, ref_grads = _run_2d(inputs, 'torch', 256, 256)
    assert_close_scaled(out, ref, 1e-4)
    for grad, ref_grad in zip(grads, ref_grads):
        assert_close_scaled(grad, ref_grad, 1e-3)
    again, grads_again = _run_2d(inputs, 'triton', 256, 256)
    assert torch.equal(out, again)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_again))

