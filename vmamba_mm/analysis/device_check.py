"""Measuring pieces of ``tools/analysis_tools/gpu_check.py``: error metrics, device timing, the
copy and matrix-product ceilings, kernel time by kind from a profile, and byte counts for GB/s and
the roofline floor. Torch only; every function runs on the CPU too (perf_counter in place of CUDA
events), which is how ``gpu_check.py --smoke`` tests them.
"""
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# ----------------------------------------------------------------------------- error metrics


def compare(actual, expected):
    """How far ``actual`` is from ``expected`` (both tensors; compared in float64 on the CPU).

    max_scaled: max |a - e| over max(1, max |e|), the rule of the kernel tests;
    rel_norm: ||a - e|| / ||e||; finite: no NaN or inf in ``actual``.
    """
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    if a.shape != e.shape:
        raise ValueError(f'compare: shape {tuple(a.shape)} against {tuple(e.shape)}.')
    diff = (a - e).abs()
    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    norm = e.norm().item()
    return dict(max_scaled=diff.max().item() / scale if diff.numel() else 0.0,
                rel_norm=(a - e).norm().item() / norm if norm > 0 else (a - e).norm().item(),
                finite=bool(torch.isfinite(a).all()))


def within(metrics, tolerance):
    """A comparison passes when the output is finite and its max scaled error <= tolerance (a NaN
    error never passes)."""
    return metrics['finite'] and metrics['max_scaled'] <= tolerance


# ----------------------------------------------------------------------------------- timing


def synchronize(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def time_ms(fn, device, iters=1):
    """Milliseconds per call of ``fn`` over ``iters`` back-to-back calls: CUDA events on a GPU
    (device time, no host sync inside), perf_counter on the CPU."""
    if torch.device(device).type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / iters
    begin = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - begin) * 1e3 / iters


def median_ms(fn, device, warmup=2, repeats=5, iters=1):
    """Median over ``repeats`` of ``time_ms(fn, device, iters)`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    return statistics.median(time_ms(fn, device, iters) for _ in range(repeats))


def copy_bandwidth_gbs(device, nbytes, repeats=10):
    """Device-memory bandwidth of a plain tensor copy: bytes read + bytes written per second
    (GB/s, 1e9), median of ``repeats`` copies of a random float32 buffer of ``nbytes``."""
    numel = nbytes // 4
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup=3, repeats=repeats)
    return dict(bytes_per_copy=2 * numel * 4, ms=ms, gbs=2 * numel * 4 / (ms * 1e-3) / 1e9)


def matmul_tflops(device, size, dtype, allow_tf32=False, repeats=10):
    """Rate of a size^3 matrix product on random data (2 size^3 FLOP per product, TFLOP/s)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        ms = median_ms(lambda: a @ b, device, warmup=3, repeats=repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return dict(size=size, dtype=str(dtype).replace('torch.', ''), allow_tf32=allow_tf32, ms=ms,
                tflops=2 * size**3 / (ms * 1e-3) / 1e12)


# ------------------------------------------------------------------- profile: time by kind

KINDS = ('gemm/conv', 'copies/layout', 'norms', 'scan', 'element-wise', 'other')
# Name fragments per kind, checked in this order on the lower-cased kernel (or CPU operator)
# name; the first kind with a match wins. Copies come before element-wise because PyTorch runs
# its copies inside element-wise templates (``unrolled_elementwise_kernel<direct_copy_kernel>``).
KIND_PATTERNS = (
    ('gemm/conv', ('gemm', 'cutlass', 'cublas', 'xmma', 'nvjet', 'conv', 'dgrad', 'wgrad',
                   'fprop', 'winograd', 'aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm',
                   'aten::linear', 'aten::matmul', 'einsum', 'mkldnn::_linear')),
    ('copies/layout', ('copy', 'memcpy', 'memset', 'transpose', 'permute', 'contiguous',
                       'clone', 'catarray', 'aten::cat', 'aten::stack', 'index', 'gather',
                       'scatter', 'roll_cuda', 'aten::roll', 'aten::pad', 'constant_pad',
                       'nchwtonhwc', 'nhwctonchw', 'flip', 'im2col', 'col2im', 'aten::to')),
    ('norms', ('layer_norm', 'layernorm', 'batch_norm', 'group_norm', 'rms_norm', 'gammabeta')),
    ('scan', ('selective_scan', 'cross_scan', 'cross_merge', 'scan_fwd', 'scan_bwd', 'vmamba::',
              'scan_2d')),
    ('element-wise', ('elementwise', 'gelu', 'silu', 'sigmoid', 'softplus', 'aten::add',
                      'aten::mul', 'aten::sub', 'aten::div', 'aten::exp', 'aten::neg',
                      'aten::fill', 'aten::zero', 'aten::where', 'aten::relu', 'aten::clamp',
                      'dropout', 'bernoulli', 'aten::pow', 'aten::sqrt', 'aten::rsqrt',
                      'aten::tanh', 'aten::log', 'aten::abs', 'aten::masked')),
)


def kernel_kind(name, in_scan=False):
    """The kind of a kernel or CPU operator by its name; ``in_scan``: it ran inside the scan
    core's profiler range, so what is not a GEMM, a copy or a norm there counts as scan."""
    lowered = name.lower()
    for kind, fragments in KIND_PATTERNS:
        if kind == 'scan' and in_scan:
            return 'scan'
        if any(fragment in lowered for fragment in fragments):
            return kind
    return 'scan' if in_scan else 'other'


def profile_scan_cores(model, range_name):
    """Run each token mixer's scan core of ``model`` inside a profiler range ``range_name``, so
    that ``time_by_kind`` counts its operators as the scan."""
    from vmamba_mm.models import TokenMixer
    for module in model.modules():
        if isinstance(module, TokenMixer):
            module.profile_scan(range_name)


def _inside(event, range_name):
    while event is not None:
        if event.name == range_name:
            return True
        event = event.cpu_parent
    return False


def time_by_kind(events, scan_range, device_type, top=15):
    """Totals (ms) by kind and the top kernels of a profile's events.

    On CUDA the device time of every kernel (and memcpy/memset) launched by a CPU event; on the
    CPU the self time of every operator. Work under a ``record_function(scan_range)`` that is no
    GEMM, copy or norm counts as scan.
    """
    totals = {kind: 0.0 for kind in KINDS}
    per_name = {}
    for event in events:
        if device_type == 'cuda':
            items = [(k.name, k.duration) for k in event.kernels if k.name != scan_range]
        elif event.name == scan_range:
            items = [('python in the scan range (self time)', event.self_cpu_time_total)]
        else:
            items = [(event.name, event.self_cpu_time_total)]
        if not items:
            continue
        in_scan = _inside(event, scan_range)
        for name, microseconds in items:
            kind = kernel_kind(name, in_scan)
            totals[kind] += microseconds / 1e3
            entry = per_name.setdefault((name, kind), [0.0, 0])
            entry[0] += microseconds / 1e3
            entry[1] += 1
    ranked = sorted(per_name.items(), key=lambda item: -item[1][0])[:top]
    return dict(total_ms=sum(totals.values()), by_kind_ms=totals,
                top=[dict(name=name[:160], kind=kind, ms=ms, calls=calls)
                     for (name, kind), (ms, calls) in ranked])


# ------------------------------------------------------------------------- byte counting


def scan_bytes(batch, dim, length, state, groups, input_bytes, out_bytes=4):
    """Fewest bytes the selective scan moves: each input read once, each output written once.

    forward: u, delta (batch, dim, L) and B, C (batch, groups, N, L) read at ``input_bytes``
    each, y written at ``out_bytes`` (float32 in the model); A, D and delta_bias (dim x (N + 2)
    float32) read. backward, counted on top for forward+backward: u, delta, B, C read again and
    dy read (``out_bytes``); du, ddelta, dB, dC written in their inputs' dtype; dA, dD,
    d(delta_bias) written (float32).
    """
    sequence = batch * dim * length
    projections = batch * groups * state * length
    parameters = dim * (state + 2) * 4
    forward = (2 * sequence + 2 * projections) * input_bytes + sequence * out_bytes + parameters
    backward = ((2 * sequence + 2 * projections) * input_bytes + sequence * out_bytes +
                (2 * sequence + 2 * projections) * input_bytes + 2 * parameters)
    return dict(forward=forward, forward_backward=forward + backward)


def scan_core_bytes(batch, channels, length, routes, rank, state, input_bytes, out_bytes=4):
    """Fewest bytes SS2D's fused scan core moves (``cross_selective_scan``'s Triton kernel):
    forward: the (B, L, C) map and the (B, L, routes, R + 2N) projections read at
    ``input_bytes``, the routes' summed (B, L, C) output written at ``out_bytes``, and the
    route parameters (A, D, bias, delta's weights: routes x C x (N + 2 + R) float32) read.
    backward, on top: the map, the projections and dy read again, dx and dprojections written in
    their inputs' dtype, the parameters' gradients written.
    """
    pixels = batch * length * channels
    projections = batch * length * routes * (rank + 2 * state)
    parameters = routes * channels * (state + 2 + rank) * 4
    forward = (pixels + projections) * input_bytes + pixels * out_bytes + parameters
    backward = (2 * (pixels + projections) * input_bytes + pixels * out_bytes + 2 * parameters)
    return dict(forward=forward, forward_backward=forward + backward)


GEMM_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::convolution',
            'aten::_convolution', 'aten::cudnn_convolution')


class _TrafficCounter(TorchDispatchMode):
    """Counts the elements every GEMM, convolution and scan-kernel operator reads and writes."""

    def __init__(self):
        super().__init__()
        self.elements = 0
        self.operators = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name
        if name in GEMM_OPS or name.startswith('vmamba::'):
            tensors = [t for t in tree_flatten((args, kwargs, out))[0]
                       if isinstance(t, torch.Tensor)]
            count = sum(t.numel() for t in tensors)
            self.elements += count
            self.operators[name] = self.operators.get(name, 0) + count
        return out


def minimal_traffic(model, forward):
    """Elements read and written by the operators that must each pass over memory -- GEMMs,
    convolutions and the scan kernel: inputs (weights included) read once, outputs written once
    -- in one ``forward()``; element-wise work, norms and layout changes are taken as fused into
    them. Returns (elements, per-operator elements); run it on meta tensors for shapes only."""
    counter = _TrafficCounter()
    with torch.no_grad(), counter:
        forward()
    return counter.elements, counter.operators


def roofline(flop, traffic_bytes, matmul_tflops_measured, copy_gbs_measured):
    """The time floor of a step from its FLOP and fewest bytes against measured ceilings.

    compute_ms = FLOP / matrix rate, memory_ms = bytes / copy bandwidth; the floor is the larger
    (perfect overlap), ``serial_ms`` their sum (no overlap)."""
    compute_ms = flop / (matmul_tflops_measured * 1e12) * 1e3
    memory_ms = traffic_bytes / (copy_gbs_measured * 1e9) * 1e3
    return dict(compute_ms=compute_ms, memory_ms=memory_ms, floor_ms=max(compute_ms, memory_ms),
                serial_ms=compute_ms + memory_ms)
