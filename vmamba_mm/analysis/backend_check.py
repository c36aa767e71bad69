"""Every GPU backend of a scan operation against its sequential reference: the cases (shapes),
their inputs, one call with its gradients, and the tolerances. Used by
``tools/analysis_tools/gpu_check.py``'s correctness section; torch only."""
import contextlib

import torch

import vmamba_kernels
from vmamba_kernels import NUM_ROUTES

# Max scaled error allowed (max |out - ref| / max(1, max |ref|)). float32: the reference's own
# arithmetic reordered (forward), sums over L and batch in another order (gradients). bfloat16
# inputs are rounded to 8 significant bits (2^-8 = 0.4 %); the reference gets the same rounded
# values in float32, so the error left is the kernels' bf16 outputs, gradients and (under
# autocast) the projections' bf16 products.
TOLERANCES = {('float32', 'forward'): 1e-4, ('float32', 'gradient'): 1e-3,
              ('bfloat16', 'forward'): 1e-2, ('bfloat16', 'gradient'): 2e-2}
GPU_BACKENDS = ('triton', 'cuda')


def correctness_cases(smoke):
    """(operation, case label, shape) for every operation; the shapes cross a chunk boundary,
    use groups, and leave odd maps. The sequential reference runs on the CPU, so they stay small
    even on a GPU (``--smoke``: tiny, for the Triton interpreter)."""
    if smoke:
        scans = [(1, 4, 20, 2, 2)]
        grids = [(1, 4, 3, 5, 2, 2)]
        maps = [(1, 2, 3, 5)]
        cores = [(1, 2, 3, 5, 1, 1)]
    else:
        # (batch, dim, L, N, groups): VMamba-T's N = 1 with 4 groups, N = 16, a long sequence.
        scans = [(2, 64, 1000, 1, 4), (1, 16, 77, 16, 2), (2, 12, 300, 4, 3)]
        # (batch, dim, H, W, N, groups)
        grids = [(2, 32, 14, 14, 1, 4), (1, 8, 9, 40, 4, 2)]
        maps = [(2, 40, 9, 13), (2, 16, 7, 7)]
        # (batch, channels, H, W, rank, N)
        cores = [(2, 32, 9, 13, 2, 1), (1, 16, 14, 14, 4, 4)]
    cases = []
    for shape in scans:
        cases.append(('selective_scan', f'b{shape[0]} d{shape[1]} L{shape[2]} N{shape[3]} '
                      f'g{shape[4]}', shape))
    for shape in grids:
        cases.append(('selective_scan_2d', f'b{shape[0]} d{shape[1]} {shape[2]}x{shape[3]} '
                      f'N{shape[4]} g{shape[5]}', shape))
    for op in ('cross_scan', 'cross_merge'):
        for shape in maps:
            cases.append((op, f'b{shape[0]} c{shape[1]} {shape[2]}x{shape[3]}', shape))
    for op in ('cross_selective_scan', 'cross_selective_scan_2d'):
        for shape in cores:
            cases.append((op, f'b{shape[0]} c{shape[1]} {shape[2]}x{shape[3]} R{shape[4]} '
                          f'N{shape[5]}', shape))
    return cases


def make_case_inputs(op, shape, dtype, seed):
    """The operation's inputs as a dict (tensors on the CPU, in ``dtype`` where the contract lets
    them be, float32 otherwise) and the keyword arguments of its call."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*size, scale=1.0):
        return torch.randn(*size, generator=gen) * scale

    if op in ('selective_scan', 'selective_scan_2d'):
        if op == 'selective_scan':
            batch, dim, length, state, groups = shape
            extra = {}
        else:
            batch, dim, height, width, state, groups = shape
            length, extra = height * width, dict(height=height, width=width)
        tensors = dict(u=rnd(batch, dim, length).to(dtype),
                       delta=rnd(batch, dim, length, scale=0.5).to(dtype),
                       A=-(torch.rand(dim, state, generator=gen) + 0.1),
                       B=rnd(batch, groups, state, length).to(dtype),
                       C=rnd(batch, groups, state, length).to(dtype),
                       D=rnd(dim), delta_bias=rnd(dim, scale=0.5))
        return tensors, dict(delta_softplus=True, out_dtype=torch.float32, **extra)
    if op == 'cross_scan':
        batch, channels, height, width = shape
        return dict(x=rnd(batch, channels, height, width).to(dtype)), dict(order='cross')
    if op == 'cross_merge':
        batch, channels, height, width = shape
        return (dict(routes=rnd(batch, NUM_ROUTES, channels, height * width).to(dtype)),
                dict(height=height, width=width, order='cross'))
    batch, channels, height, width, rank, state = shape
    routes = NUM_ROUTES
    return (dict(x=rnd(batch, channels, height, width).to(dtype),
                 x_proj_weight=rnd(routes, rank + 2 * state, channels, scale=channels**-0.5),
                 dt_projs_weight=rnd(routes, channels, rank, scale=rank**-0.5),
                 A=-(torch.rand(routes * channels, state, generator=gen) + 0.1),
                 D=rnd(routes * channels), delta_bias=rnd(routes * channels, scale=0.5)),
            dict(order='cross'))


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
