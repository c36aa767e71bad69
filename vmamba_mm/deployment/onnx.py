"""ONNX export of vmamba-mm configs and an onnxruntime runner.

What goes into the graph, by the config's ``default_scope``:

* ``mmpretrain`` (classifiers): the normalised image batch -> the logits of
  ``model(x, mode='tensor')``;
* ``mmseg`` (segmentors, e.g. UperNet): the image batch -> the seg logits of ``mode='tensor'``;
* ``mmdet`` (detectors): the image batch -> the backbone + neck feature maps (FPN levels); the
  heads' box decoding and NMS stay outside.

VSSM backbones are built with ``scan_backend='torch'`` whatever the config says: the scan in plain
tensor ops with a fixed 16-token chunk and no branch on the sizes (see
``vmamba_kernels.cross_selective_scan.torch``), which ``torch.onnx.export(dynamo=True)`` turns into
standard ONNX operators. The C++ and Triton kernels are custom operators ONNX has no kernel for.
"""
import collections
import importlib
import json
import os
import os.path as osp
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..config.walk import config_dicts
from ..engine.output_paths import output_folder_problem

EXPORT_SCAN_BACKEND = 'torch'
# The tasks the exporter knows, by the config's default_scope.
TASKS = {'mmpretrain': 'classifier', 'mmseg': 'segmentor', 'mmdet': 'detector features'}
# --verify: largest max|onnx - torch| / max|torch| accepted.
RELATIVE_TOLERANCE = 1e-4


class ExportError(ValueError):
    """A config, checkpoint or shape the exporter cannot use; the message says what to change."""


class VerificationError(RuntimeError):
    """onnxruntime's outputs differ from PyTorch's; the message names the input size."""


class ClassifierLogits(nn.Module):
    """An mmpretrain classifier as image batch -> logits (``mode='tensor'``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images, mode='tensor')


class SegmentorLogits(nn.Module):
    """An mmseg segmentor as image batch -> seg logits at the decode head's resolution."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images, mode='tensor')


class DetectorFeatures(nn.Module):
    """An mmdet detector's backbone and neck: image batch -> the neck's feature maps."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return tuple(self.model.extract_feat(images))


WRAPPERS = {'mmpretrain': ClassifierLogits, 'mmseg': SegmentorLogits, 'mmdet': DetectorFeatures}


@dataclass
class ExportModel:
    """What ``build_export_model`` returns: the module to export and how it was made."""
    module: nn.Module
    scope: str
    task: str
    notes: List[str] = field(default_factory=list)

    @property
    def is_classifier(self):
        return self.scope == 'mmpretrain'


def _force_torch_scan(model_cfg):
    """Set scan_backend='torch' on every VSSM in the model config; return the keys set."""
    changed = []
    for key, node in config_dicts(model_cfg, 'model'):
        if node.get('type') == 'VSSM':
            if node.get('scan_backend') != EXPORT_SCAN_BACKEND:
                changed.append(f'{key}.scan_backend ({node.get("scan_backend")!r})')
            node['scan_backend'] = EXPORT_SCAN_BACKEND
    return changed


def load_export_config(config_path, cfg_options=None):
    """The config, checked as tools/test.py checks it (a missing file is an ExportError)."""
    import vmamba_mm  # noqa: F401  (registers VSSM and the checkpoint loader)
    from vmamba_mm.config import ConfigError
    from vmamba_mm.engine.runner import load_config
    try:
        return load_config(config_path, cfg_options)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None


def build_export_model(config_path, checkpoint=None, cfg_options=None):
    """Build the config's model for export, load ``checkpoint`` (as tools/test.py loads it:
    project checkpoints, converted or official VMamba files), wrap it for its task."""
    from mmengine.registry import init_default_scope

    from vmamba_mm.engine.runner import describe_sync_batchnorm_change, replace_sync_batchnorm
    cfg = load_export_config(config_path, cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ExportError(f'{config_path}: default_scope is {scope!r}; the exporter handles '
                          f'{sorted(TASKS)} configs.')
    notes = []
    forced = _force_torch_scan(cfg.model)
    if forced:
        notes.append(f"scan_backend -> 'torch' (the export-safe chunked scan in tensor ops) in "
                     f'{", ".join(forced)}')
    replaced = replace_sync_batchnorm(cfg, 'none')
    if replaced:
        notes.append(describe_sync_batchnorm_change(replaced, 'none'))
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    model = models.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint_like_test(model, checkpoint)
        notes.append(f'weights from {checkpoint}')
    else:
        notes.append('no --checkpoint: random weights (the graph is the same)')
    model.eval()
    return ExportModel(WRAPPERS[scope](model).eval(), scope, TASKS[scope], notes)


def load_checkpoint_like_test(model, checkpoint):
    """Load a checkpoint strictly: the project's own files, or official VMamba ones converted
    on load; a file that does not fit the model is an ExportError naming the keys."""
    from vmamba_mm.checkpoint import CheckpointContentError
    from vmamba_mm.checkpoint.fit import CheckpointMismatchError, load_fitting_checkpoint
    from vmamba_mm.engine.resume import checkpoint_file_problem
    problem = checkpoint_file_problem(checkpoint)
    if problem is not None:
        raise ExportError(f'checkpoint {checkpoint} {problem}.')
    try:
        load_fitting_checkpoint(model, checkpoint)
    except (CheckpointContentError, CheckpointMismatchError) as exc:
        raise ExportError(str(exc)) from None


@dataclass
class ExportResult:
    path: str
    input_name: str
    output_names: List[str]
    # (smallest side, None) the graph was traced for; None when the size is fixed.
    size_range: Optional[Tuple[int, None]]
    dynamic_batch: bool


def output_file_problem(path):
    """Why the .onnx file ``path`` cannot be written, said before minutes of export; None when
    it can (``engine.output_paths``: a probe file where it will go, no folder created)."""
    if osp.isdir(path):
        return f'--output-file {path} is a folder; give a file path ending in .onnx.'
    return output_folder_problem(osp.dirname(osp.abspath(path)), f'--output-file {path}')


def _symbolic_range(program, dim):
    """The smallest size of an input dim of an ExportedProgram, None when static."""
    if not isinstance(dim, torch.SymInt):
        return None
    ranges = program.range_constraints.get(dim.node.expr)
    return None if ranges is None else int(ranges.lower)


def export_onnx(module, shape, output_file, batch_size=1, dynamic_shape=False,
                dynamic_batch=False, opset=None):
    """Export ``module`` (image batch in) to ``output_file`` through torch.onnx's dynamo path.

    The example batch is random; with ``dynamic_batch`` it has two images (torch.export
    specialises a dimension of size 1). Returns an ExportResult.
    """
    height, width = shape
    if dynamic_shape and any(getattr(sub, 'scan_2d', False) for sub in module.modules()):
        raise ExportError('--dynamic-shape: this model scans 2D grids (scan_2d=True), which '
                          'export at a fixed size only; export without --dynamic-shape, one '
                          'file per input size.')
    batch = max(batch_size, 2) if dynamic_batch else batch_size
    example = torch.randn(batch, 3, height, width)
    dims = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim.AUTO
    if dynamic_shape:
        dims[2] = dims[3] = torch.export.Dim.AUTO
    dynamic_shapes = {'images': dims} if dims else None
    folder = osp.dirname(osp.abspath(output_file))
    os.makedirs(folder, exist_ok=True)
    with torch.no_grad():
        program = torch.export.export(_NamedInput(module), (example, ),
                                      dynamic_shapes=dynamic_shapes, strict=False)
        if dynamic_shape:
            _check_dynamic_sizes(program, shape)
        onnx_program = torch.onnx.export(program, (example, ), dynamo=True, opset_version=opset,
                                         verbose=False)
    outputs = [f'output{i}' for i in range(len(onnx_program.model.graph.outputs))]
    names = ['logits'] if isinstance(module, ClassifierLogits) else \
        ['seg_logits'] if isinstance(module, SegmentorLogits) else \
        [f'feature{i}' for i in range(len(outputs))]
    for value, name in zip(onnx_program.model.graph.outputs, names):
        value.name = name
    onnx_program.model.graph.inputs[0].name = 'images'
    # Write next to the target and rename: an interrupted export leaves no half file behind.
    handle, temp = tempfile.mkstemp(suffix='.onnx.part', dir=folder)
    os.close(handle)
    try:
        onnx_program.save(temp)
        os.replace(temp, output_file)
    finally:
        if osp.exists(temp):
            os.remove(temp)
    fake = program.graph_signature.user_inputs[0]
    spec = next(node for node in program.graph.nodes if node.name == fake)
    input_shape = spec.meta['val'].shape
    size_range = None
    if dynamic_shape:
        ranges = [_symbolic_range(program, input_shape[i]) for i in (2, 3)]
        lows = [r for r in ranges if r is not None]
        size_range = (max(lows), None) if lows else None
    return ExportResult(output_file, 'images', names, size_range, dynamic_batch)


def _check_dynamic_sizes(program, shape):
    """torch.export makes a dim that is 1 at the export size a constant: an example so small
    that some map is 1 pixel high or wide gives a fixed-size graph. Refuse it."""
    fake = program.graph_signature.user_inputs[0]
    node = next(node for node in program.graph.nodes if node.name == fake)
    sizes = node.meta['val'].shape[2:]
    if not all(isinstance(size, torch.SymInt) for size in sizes):
        raise ExportError(f'--dynamic-shape at {shape[0]}x{shape[1]}: some feature map of the '
                          f'model is 1 pixel high or wide at this size, so torch.export fixed '
                          f'the input size; export at a larger --shape (e.g. 224 224).')


class _NamedInput(nn.Module):
    """The module with its input called ``images`` (the ONNX input's name)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, images):
        out = self.module(images)
        return tuple(out) if isinstance(out, (list, tuple)) else out


class OnnxRuntimeSession:
    """An onnxruntime CPU session of an exported file: ``session(batch)`` -> list of arrays.

    threads: intra-op threads (None: onnxruntime's choice, one per core). All of onnxruntime's
    graph optimisations are on. profile_prefix: record every run in onnxruntime's profiler, to a
    file starting with this path (``session.session.end_profiling()`` writes it, returns its
    name).
    """

    def __init__(self, path, threads=None, profile_prefix=None):
        import onnxruntime as ort
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX file not found: {path}')
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.path = path
        self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, batch):
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})


@dataclass
class OperatorTime:
    """One operator type's share of an onnxruntime run (see ``profile_operators``)."""
    op_type: str
    ms_per_run: float
    nodes_per_run: float


def profile_operators(path, batch, runs=10, threads=None):
    """Time per run of each operator type of ``path``'s optimised graph in onnxruntime's
    profiler, most costly first, and the mean profiled run (ms): ``(list of OperatorTime,
    run_ms)``. A warm-up run comes first and is left out. The profiler adds its own overhead:
    compare operator types with each other, not with un-profiled timings."""
    if runs < 1:
        raise ValueError(f'profile_operators: runs must be >= 1, got {runs}')
    folder = tempfile.mkdtemp(prefix='vmamba_ort_profile_')
    try:
        session = OnnxRuntimeSession(path, threads, profile_prefix=osp.join(folder, 'profile'))
        for _ in range(runs + 1):
            session(batch)
        with open(session.session.end_profiling()) as trace:
            events = json.load(trace)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    model_runs = sorted((e['ts'], e['ts'] + e['dur']) for e in events
                        if e.get('cat') == 'Session' and e['name'] == 'model_run')[-runs:]
    start = model_runs[0][0]
    total, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time') and \
                event['ts'] >= start:
            total[event['args']['op_name']] += event['dur']
            count[event['args']['op_name']] += 1
    rows = [OperatorTime(op, total[op] / runs / 1000, count[op] / runs)
            for op, _ in total.most_common()]
    return rows, sum(end - begin for begin, end in model_runs) / runs / 1000


def _ort_errors():
    """The exception types onnxruntime raises from a run (a shape it cannot take, a kernel
    failure); they derive from Exception directly."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state
    return tuple(getattr(state, name) for name in (
        'Fail', 'InvalidArgument', 'RuntimeException', 'InvalidGraph', 'NotImplemented',
        'NoSuchFile', 'InvalidProtobuf', 'EPFail') if hasattr(state, name))


ORT_ERRORS = _ort_errors()


@dataclass
class Comparison:
    batch: int
    height: int
    width: int
    relative_error: float  # max over outputs of max|diff| / max|ref|
    top1_equal: Optional[bool]  # classifiers only

    def describe(self):
        top1 = '' if self.top1_equal is None else \
            f', top-1 {"same" if self.top1_equal else "DIFFERENT"}'
        return (f'batch {self.batch}, {self.height}x{self.width}: max|onnx - torch| / '
                f'max|torch| = {self.relative_error:.2e}{top1}')

    @property
    def ok(self):
        return self.relative_error <= RELATIVE_TOLERANCE and self.top1_equal is not False


def compare(module, session, batch, height, width, seed=0, classifier=False):
    """Run ``module`` and ``session`` on the same random batch; a Comparison."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, height, width, generator=generator)
    with torch.no_grad():
        expected = module(images)
    expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    try:
        got = session(images)
    except ORT_ERRORS as exc:
        raise VerificationError(f'batch {batch}, {height}x{width}: onnxruntime failed: '
                                f'{type(exc).__name__}: {str(exc).splitlines()[0]}') from exc
    if len(got) != len(expected):
        raise VerificationError(f'batch {batch}, {height}x{width}: onnxruntime gave {len(got)} '
                                f'outputs, PyTorch {len(expected)}.')
    error = 0.0
    for ref, out in zip(expected, got):
        ref = ref.numpy()
        if out.shape != ref.shape:
            raise VerificationError(f'batch {batch}, {height}x{width}: onnxruntime output of '
                                    f'shape {out.shape}, PyTorch {ref.shape}.')
        scale = float(np.abs(ref).max()) or 1.0
        error = max(error, float(np.abs(out - ref).max()) / scale)
    top1 = None
    if classifier:
        top1 = bool((got[0].argmax(-1) == expected[0].numpy().argmax(-1)).all())
    return Comparison(batch, height, width, error, top1)


def verification_inputs(shape, dynamic_shape, dynamic_batch, smallest_side=None):
    """(batch, height, width) triples --verify runs: the export size; with a dynamic size also a
    larger non-square one, an odd one and the smallest the file claims (``smallest_side``,
    non-square); other batches when the batch is dynamic."""
    height, width = shape
    cases = [(1, height, width)]
    if dynamic_shape:
        low = smallest_side or 1
        cases.append((1, height + 32, width + 64))
        odd_h = height + 17 if (height + 17) % 2 else height + 16
        odd_w = max(width - 15 if (width - 15) % 2 else width - 16, low | 1)
        cases.append((1, odd_h, odd_w))
        # The smallest maps are where a file traced at another size is most likely to break
        # (a stage's scan fits one chunk there).
        cases.append((1, low, low + 5))
    if dynamic_batch:
        cases.append((3, height, width))
    return list(dict.fromkeys(cases))


def verify(module, session, cases, classifier, report=print):
    """Compare onnxruntime with PyTorch on each (batch, H, W); report each, raise
    VerificationError on the first that differs by more than RELATIVE_TOLERANCE."""
    results = []
    for index, (batch, height, width) in enumerate(cases):
        result = compare(module, session, batch, height, width, seed=index,
                         classifier=classifier)
        report(f'verify: {result.describe()}')
        if not result.ok:
            raise VerificationError(f'batch {batch}, {height}x{width}: {result.describe()} '
                                    f'(tolerance {RELATIVE_TOLERANCE:g}).')
        results.append(result)
    return results


def export_for_benchmark(config_path, shape=(224, 224), batch_size=1, dynamic_shape=False,
                         cfg_options=None, out_dir=None, checkpoint=None, opset=None,
                         without_scans=False):
    """Export a config for timing; returns (path of the .onnx file, ExportModel).

    The file goes to ``out_dir`` (default: a fresh temporary folder) as
    ``<config name>_<H>x<W>_b<batch>.onnx``. Swin-T and other non-VSSM configs export the
    same way (their graph has no scan). ``without_scans``: every SS2D's scan replaced by its
    skip term first (``vmamba_mm.analysis.scan_ablation``, for ``benchmark.py --scan-floor``;
    the file is then not the model), named ``..._noscan.onnx``.
    """
    export_model = build_export_model(config_path, checkpoint, cfg_options)
    if without_scans:
        from vmamba_mm.analysis.scan_ablation import remove_scans
        remove_scans(export_model.module)
        export_model.notes.append('scans removed (skip term only): timing ablation')
    out_dir = out_dir or tempfile.mkdtemp(prefix='vmamba_onnx_')
    name = osp.splitext(osp.basename(config_path))[0] + ('_noscan' if without_scans else '')
    path = osp.join(out_dir, f'{name}_{shape[0]}x{shape[1]}_b{batch_size}.onnx')
    export_onnx(export_model.module, shape, path, batch_size=batch_size,
                dynamic_shape=dynamic_shape, opset=opset)
    return path, export_model


def count_nodes(path) -> Sequence[Tuple[str, int]]:
    """(op type, count) of an ONNX file's main graph, most frequent first."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return counts.most_common()
