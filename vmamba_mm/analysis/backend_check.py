"""Every GPU backend of a scan operation against its sequential reference: the cases (shapes),
their inputs, one call with its gradients, and the tolerances. Used by
``tools/analysis_tools/gpu_check.py``'s correctness section; torch only."""
import contextlib

import torch

import vmamba_kernels
from vmamba_kernels.common.cases import examples_of, operations_with_examples

# Max scaled error allowed (max |out - ref| / max(1, max |ref|)). float32: the reference's own
# arithmetic reordered (forward), sums over L and batch in another order (gradients). bfloat16
# inputs are rounded to 8 significant bits (2^-8 = 0.4 %); the reference gets the same rounded
# values in float32, so the error left is the kernels' bf16 outputs, gradients and (under
# autocast) the projections' bf16 products.
TOLERANCES = {('float32', 'forward'): 1e-4, ('float32', 'gradient'): 1e-3,
              ('bfloat16', 'forward'): 1e-2, ('bfloat16', 'gradient'): 2e-2}
GPU_BACKENDS = ('triton', 'cuda')


def correctness_cases(smoke):
    """(operation, case label, shape) for every operation whose folder gives example inputs of
    the size (``cases.py``: ``'check'``, or ``'smoke'`` for the Triton interpreter). The shapes
    cross a chunk boundary, use groups, and leave odd maps; the sequential reference runs on the
    CPU, so they stay small even on a GPU."""
    size = 'smoke' if smoke else 'check'
    return [(op, label, shape) for op in operations_with_examples()
            for label, shape in examples_of(op).cases(size)]


def make_case_inputs(op, shape, dtype, seed):
    """The operation's inputs as a dict (tensors on the CPU, in ``dtype`` where the contract lets
    them be, float32 otherwise) and the keyword arguments of its call."""
    return examples_of(op).make(shape, dtype=dtype, seed=seed)


def run_case(op, tensors, kwargs, backend, device, grad_seed, autocast_dtype=None):
    """(output, {name: gradient}) of one call, the gradients of a random output gradient drawn
    from ``grad_seed``; with ``grad_seed`` None a no-grad forward (the fused kernels run only
    there)."""
    fn = getattr(vmamba_kernels, op)
    leaves = {name: t.detach().to(device).requires_grad_(grad_seed is not None)
              for name, t in tensors.items()}
    grad_out = grad_seed is not None
    autocast = (torch.autocast(torch.device(device).type, dtype=autocast_dtype)
                if autocast_dtype is not None else contextlib.nullcontext())
    grad_mode = torch.enable_grad() if grad_out else torch.no_grad()
    with grad_mode, autocast:
        out = fn(*leaves.values(), backend=backend, **kwargs)
    if not grad_out:
        return out, {}
    gen = torch.Generator().manual_seed(grad_seed)
    out.backward(torch.randn(out.shape, generator=gen).to(device=device, dtype=out.dtype))
    return out, {name: leaf.grad for name, leaf in leaves.items()}


@contextlib.contextmanager
def strict_fp32():
    """No TF32 anywhere: a float32 comparison must not be judged at TF32 precision."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
