"""On a GPU: the model and the scan backends on CUDA tensors (skipped without CUDA)."""
import pytest
import torch

import vmamba_kernels
from vmamba_mm.models import VSSM

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU'),
]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_backends_against_the_reference(dtype):
    gen = torch.Generator().manual_seed(0)
    batch, dim, length, state, groups = 2, 64, 1000, 4, 4
    u = torch.randn(batch, dim, length, generator=gen).to(dtype)
    delta = torch.randn(batch, dim, length, generator=gen).to(dtype)
    A = -torch.rand(dim, state, generator=gen) - 0.1
    B = torch.randn(batch, groups, state, length, generator=gen).to(dtype)
    C = torch.randn(batch, groups, state, length, generator=gen).to(dtype)
    D, bias = torch.randn(dim, generator=gen), torch.randn(dim, generator=gen)
    ref = vmamba_kernels.selective_scan(u.float(), delta.float(), A, B.float(), C.float(), D,
                                        bias, True, backend='reference')
    cuda = [t.cuda() for t in (u, delta, A, B, C, D, bias)]
    out = vmamba_kernels.selective_scan(*cuda, True, out_dtype=torch.float32)
    assert out.dtype == torch.float32 and out.is_cuda
    scale = ref.abs().max()
    assert (out.cpu() - ref).abs().max() <= 1e-4 * scale


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
