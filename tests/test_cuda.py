"""On a GPU: the model and the scan backends on CUDA tensors (skipped without CUDA)."""
import pytest
import torch

import vmamba_kernels
from vmamba_mm.models import VSSM

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU'),
]


GPU_BACKENDS = [b for b in ('cuda', 'triton', 'torch')
                if b in vmamba_kernels.available_backends()]


def _inputs(batch, dim, length, state, groups, dtype, device='cpu', seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, length, generator=gen).to(dtype)
    delta = (torch.randn(batch, dim, length, generator=gen) * 0.5).to(dtype)
    A = -torch.rand(dim, state, generator=gen) - 0.1
    B = torch.randn(batch, groups, state, length, generator=gen).to(dtype)
    C = torch.randn(batch, groups, state, length, generator=gen).to(dtype)
    D, bias = torch.randn(dim, generator=gen), torch.randn(dim, generator=gen) * 0.5
    return [t.to(device) for t in (u, delta, A, B, C, D, bias)]


def _run(inputs, backend, grad_seed=1):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y = vmamba_kernels.selective_scan(*leaves[:5], D=leaves[5], delta_bias=leaves[6],
                                      delta_softplus=True, out_dtype=torch.float32,
                                      backend=backend)
    gen = torch.Generator().manual_seed(grad_seed)
    y.backward(torch.randn(y.shape, generator=gen).to(y.device))
    return y, [t.grad for t in leaves]


def _close(actual, expected, rtol):
    scale = expected.abs().max().clamp(min=1.0)
    err = (actual.float().cpu() - expected.float().cpu()).abs().max()
    assert err <= rtol * scale, f'error {err:.3g} at scale {scale:.3g}'


@pytest.mark.parametrize('backend', GPU_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('shape', [(2, 64, 1000, 4, 4), (1, 8, 1, 1, 1), (1, 16, 77, 64, 2),
                                   (2, 12, 300, 16, 3)])
def test_gpu_backends_against_the_reference(backend, dtype, shape):
    cpu = _inputs(*shape, dtype)
    ref, ref_grads = _run([t.float() for t in cpu], 'reference')
    out, grads = _run([t.cuda() for t in cpu], backend)
    assert out.dtype == torch.float32 and out.is_cuda
    _close(out, ref, 1e-4)
    for grad, ref_grad in zip(grads, ref_grads):
        # Half-precision inputs get half-precision gradients, rounded accordingly.
        _close(grad, ref_grad, 1e-4 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize('backend', [b for b in GPU_BACKENDS if b != 'torch'])
def test_long_sequences_and_deterministic_backward(backend):
    # A 1024 x 1024 image gives L = 65,536 at stage 1; the vectorised torch path is the oracle.
    inputs = _inputs(1, 8, 65536, 4, 2, torch.float32, device='cuda')
    out, grads = _run(inputs, backend)
    ref, ref_grads = _run(inputs, 'torch')
    _close(out, ref, 1e-4)
    for grad, ref_grad in zip(grads, ref_grads):
        _close(grad, ref_grad, 1e-3)
    again, grads_again = _run(inputs, backend)
    assert torch.equal(out, again)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_again))


@pytest.mark.parametrize('order', ['cross', 'bidirectional', 'unidirectional'])
def test_fused_cross_scan_on_cuda(order):
    gen = torch.Generator().manual_seed(0)
    channels, rank, state = 32, 2, 4
    x = torch.randn(2, channels, 9, 13, generator=gen)
    args = (torch.randn(4, rank + 2 * state, channels, generator=gen) * 0.5,
            torch.randn(4, channels, rank, generator=gen) * 0.5,
            -torch.rand(4 * channels, state, generator=gen) - 0.1,
            torch.randn(4 * channels, generator=gen), torch.randn(4 * channels, generator=gen))
    ref = vmamba_kernels.cross_selective_scan(x, *args, order=order, backend='reference')
    with torch.no_grad():
        out = vmamba_kernels.cross_selective_scan(x.cuda(), *[a.cuda() for a in args],
                                                  order=order)
    _close(out, ref, 1e-4)


def test_automatic_choice_on_cuda_is_a_gpu_kernel():
    chosen, _ = vmamba_kernels.dispatch.resolve_backend('cuda')
    assert chosen.name in ('cuda', 'triton')


@pytest.mark.parametrize('arch', ['tiny-s1l8', 'vanilla-tiny'])
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


@pytest.mark.parametrize('order', ['cross', 'bidirectional', 'unidirectional'])
@pytest.mark.parametrize('channel_first', [True, False])
def test_cross_scan_and_merge_kernels_on_cuda(order, channel_first):
    x = torch.randn(2, 16, 9, 13, device='cuda')
    layout = x if channel_first else x.permute(0, 2, 3, 1).contiguous()
    leaf_k = layout.clone().requires_grad_()
    leaf_t = layout.clone().requires_grad_()
    routes = vmamba_kernels.cross_scan(leaf_k, order, channel_first)  # Triton on CUDA
    expected = vmamba_kernels.cross_scan(leaf_t, order, channel_first, implementation='torch')
    torch.testing.assert_close(routes, expected)
    grad = torch.randn_like(routes)
    routes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(leaf_k.grad, leaf_t.grad)
    merged = vmamba_kernels.cross_merge(grad, 9, 13, order, channel_first)
    torch.testing.assert_close(merged, vmamba_kernels.cross_merge(grad, 9, 13, order,
                                                                  channel_first,
                                                                  implementation='torch'))
