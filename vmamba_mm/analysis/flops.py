"""Multiply-add counts of built models by the rule of the official VMamba tables.

The official GFLOPs (classification, Mask R-CNN, UperNet) were counted by fvcore: one "FLOP" is
one multiply-add, and only a few operators count:

- convolutions, linear layers, matmul/bmm/einsum: their multiply-adds (bias not counted);
- LayerNorm, GroupNorm, InstanceNorm: 5 per element (4 without affine weights); BatchNorm as
  fvcore counts it: 2 per element in eval mode (1 without affine), 5 (4) in training mode;
- adaptive and plain average pooling: 1 per input element;
- nearest / bilinear resizing of 2D maps: 1 / 4 per output element;
- the selective scan: 9 B L D N + B D L (the D skip), D every channel of every route;
- everything else nothing: element-wise ops and activations, cross-scan and cross-merge, max
  pooling, RoIAlign, NMS, box decoding.

``count_macs`` runs a forward under two interceptors. ``torch.utils.flop_counter``'s formulas
count the operators it knows at the dispatcher (matmul, convolution) and the scan's kernel
operators (``vmamba_kernels``' ``flops`` modules register them; torch counts 2 FLOPs per
multiply-add, halved here). Norms, pooling and resizing have no formula there and reach the
dispatcher already decomposed (an adaptive pool to 1x1 arrives as a ``mean``), so they are
counted where they are still whole, as ``torch.nn.functional`` calls.

The scan must reach the counter as one operator: the ``torch`` backend is a few dozen tensor ops
that no rule would count as the official tables do. While counting, every SS2D takes a kernel
backend whatever its config says (``scan_kernels_for_counting``): ``cpp`` on the CPU, ``triton``
or ``cuda`` on a GPU, and on the ``meta`` device the ``cpp`` operators' fake implementations, which
need neither data nor a compiled kernel: counting on meta tensors is shape arithmetic only.

Torch alone, except ``count_config``, which builds a model from an OpenMMLab config.
"""
import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from vmamba_kernels import dispatch

from ..models.backbones.vssm import smallest_input_side

COUNTING_RULE = (
    'FLOPs are multiply-adds, as the official VMamba tables (fvcore) count them: conv, linear and '
    'matmul multiply-adds; Layer/Group/InstanceNorm 5 per element (BatchNorm in eval mode 2); '
    'average pooling 1 per input element; nearest/bilinear resize 1/4 per output element; '
    'selective scan 9*B*L*D*N + B*D*L; element-wise ops, cross-scan/merge, RoIAlign and NMS 0.')

# Default input size per task scope: the sizes the official tables were counted at.
# Classification at 224x224; Mask R-CNN at 1280x800 (H x W: mmdet's get_flops default, which
# the official script used); UperNet at 512x2048 (the official script's input_shape).
DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (1280, 800), 'mmseg': (512, 2048)}

# Scan backends the counter uses, best first, per device type: each runs the scan as one kernel
# operator that carries a FLOP formula. On meta only the operators' fake implementations run.
COUNTING_BACKENDS = {'cpu': ('cpp', ), 'cuda': ('triton', 'cuda'), 'meta': ('cpp', )}


class CountingError(RuntimeError):
    """The model cannot be counted as asked; the message says why and what to do."""


def _arg(args, kwargs, index, name, default=None):
    """A call's argument given by position ``index`` or by keyword ``name``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _norm_rule(weight_index):
    """Layer/Group/InstanceNorm: 5 multiply-adds per element, 4 without affine weights."""

    def rule(args, kwargs, out):
        has_affine = _arg(args, kwargs, weight_index, 'weight') is not None
        return args[0].numel() * (5 if has_affine else 4)

    return rule


def _batch_norm_rule(weight_index):
    """BatchNorm as fvcore counts it: eval mode 2 per element (1 without affine), training mode
    as the other norms (its statistics are computed, not read)."""

    def rule(args, kwargs, out):
        has_affine = _arg(args, kwargs, weight_index, 'weight') is not None
        if _arg(args, kwargs, 5, 'training', False):
            return args[0].numel() * (5 if has_affine else 4)
        return args[0].numel() * (2 if has_affine else 1)

    return rule


def _per_input_element(args, kwargs, out):
    return args[0].numel()


def _interpolate_rule(args, kwargs, out):
    """fvcore counts 2D nearest (1 per output element) and bilinear (4) resizing; 'area' is an
    adaptive average pool (1 per input element); other modes count nothing, as in fvcore."""
    mode = _arg(args, kwargs, 3, 'mode', 'nearest')
    if args[0].dim() != 4:
        return 0
    if mode == 'nearest':
        return out.numel()
    if mode == 'bilinear':
        return 4 * out.numel()
    if mode == 'area':
        return args[0].numel()
    return 0


# torch.nn.functional calls (and the torch.* forms some code calls directly) -> (label, rule).
# The torch.* forms take their arguments in ATen's order.
FUNCTION_RULES = {
    F.layer_norm: ('layer_norm', _norm_rule(2)),
    torch.layer_norm: ('layer_norm', _norm_rule(2)),
    F.group_norm: ('group_norm', _norm_rule(2)),
    torch.group_norm: ('group_norm', _norm_rule(2)),
    F.instance_norm: ('instance_norm', _norm_rule(3)),
    torch.instance_norm: ('instance_norm', _norm_rule(1)),
    F.batch_norm: ('batch_norm', _batch_norm_rule(3)),
    torch.batch_norm: ('batch_norm', _batch_norm_rule(1)),
    F.adaptive_avg_pool1d: ('avg_pool', _per_input_element),
    F.adaptive_avg_pool2d: ('avg_pool', _per_input_element),
    F.adaptive_avg_pool3d: ('avg_pool', _per_input_element),
    F.avg_pool1d: ('avg_pool', _per_input_element),
    F.avg_pool2d: ('avg_pool', _per_input_element),
    F.avg_pool3d: ('avg_pool', _per_input_element),
    F.interpolate: ('interpolate', _interpolate_rule),
}


@dataclass
class MacCount:
    """What ``count_macs`` found.

    ``by_module``: multiply-adds per innermost running module (qualified name, '' for the model
    itself); ``by_operator``: per operator or function label; ``uncounted_operators``: dispatcher
    operators outside ATen that ran without a rule (counted as 0, as fvcore does).
    """
    total: int = 0
    by_module: dict = field(default_factory=dict)
    by_operator: dict = field(default_factory=dict)
    uncounted_operators: set = field(default_factory=set)

    def add(self, module_name, label, macs):
        if not macs:
            return
        macs = int(macs)
        self.total += macs
        self.by_module[module_name] = self.by_module.get(module_name, 0) + macs
        self.by_operator[label] = self.by_operator.get(label, 0) + macs

    def module_total(self, name):
        """Multiply-adds of module ``name`` and everything inside it ('' is the whole model)."""
        if not name:
            return self.total
        prefix = name + '.'
        return sum(macs for module, macs in self.by_module.items()
                   if module == name or module.startswith(prefix))


class _ModuleStack:
    """The innermost module of ``model`` running now, from global forward hooks.

    Modules called through ``module.forward(...)`` rather than ``module(...)`` run no hooks; what
    they compute lands on the nearest enclosing module that did, and sums by name prefix
    (``MacCount.module_total``) still put it under the right parents.
    """

    def __init__(self, model):
        self.names = {id(module): name for name, module in model.named_modules()}
        self.stack = []
        self.handles = []

    @property
    def current(self):
        return self.names[self.stack[-1]] if self.stack else ''

    def _push(self, module, args):
        if id(module) in self.names:
            self.stack.append(id(module))

    def _pop(self, module, args, output):
        if self.stack and self.stack[-1] == id(module):
            self.stack.pop()

    def __enter__(self):
        from torch.nn.modules import module as module_hooks
        self.handles = [module_hooks.register_module_forward_pre_hook(self._push),
                        module_hooks.register_module_forward_hook(self._pop, always_call=True)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.stack = []


class _FunctionCounter(TorchFunctionMode):
    """Norms, pooling and resizing, counted as whole ``torch.nn.functional`` calls."""

    def __init__(self, result, modules):
        super().__init__()
        self.result = result
        self.modules = modules

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rule = FUNCTION_RULES.get(func)
        if rule is not None:
            label, count = rule
            self.result.add(self.modules.current, label, count(args, kwargs, out))
        return out


class _OperatorCounter(TorchDispatchMode):
    """Dispatcher operators with a ``torch.utils.flop_counter`` formula: matmul, convolution and
    the scan kernels. The formulas count 2 FLOPs per multiply-add."""

    def __init__(self, result, modules):
        super().__init__()
        self.result = result
        self.modules = modules

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        formula = flop_registry.get(packet)
        if formula is None:
            # As torch's FlopCounterMode: an operator that reaches the dispatcher whole (e.g.
            # under inference mode) may decompose into counted ones.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if formula is not None:
            self.result.add(self.modules.current, str(packet), formula(*args, **kwargs,
                                                                       out_val=out) // 2)
        elif func.namespace not in ('aten', 'prim', 'prims'):
            self.result.uncounted_operators.add(str(packet))
        return out


def _scan_kernels(model):
    """The scan cores of ``model``: the ``scan_kernel`` (a bound dispatch operation) of each
    module that has one, the token mixers and the other layers that scan."""
    from vmamba_kernels.dispatch import BoundOperation
    return [m.scan_kernel for m in model.modules()
            if isinstance(getattr(m, 'scan_kernel', None), BoundOperation)]


def counting_backend(operation, device_type):
    """The kernel backend that runs ``operation`` as one counted operator on ``device_type``.

    On meta tensors only the operators' fake implementations run, so any kernel backend with
    operators serves, built or not. Elsewhere the kernel must be usable here.
    """
    if device_type not in COUNTING_BACKENDS:
        raise CountingError(f'cannot count the scan on {device_type!r} tensors; count on '
                            f"{sorted(COUNTING_BACKENDS)} ('meta' needs no data).")
    candidates = COUNTING_BACKENDS[device_type]
    if device_type == 'meta':
        return candidates[0]
    reasons = []
    for name in candidates:
        try:
            dispatch.resolve(operation, device_type, name)
        except (RuntimeError, ValueError) as exc:
            reasons.append(str(exc))
            continue
        return name
    raise CountingError(
        f'no scan kernel to count {operation} on {device_type}: ' + ' '.join(reasons) +
        " Count on the meta device instead (--device meta), which needs no kernel.")


@contextlib.contextmanager
def scan_kernels_for_counting(model, device_type):
    """Within the block every scan core of ``model`` (``_scan_kernels``) runs on
    ``counting_backend``'s kernel for ``device_type``, whatever backend its config or the
    environment chose; restored after."""
    with contextlib.ExitStack() as pinned:
        for kernel in _scan_kernels(model):
            pinned.enter_context(kernel.pinned(
                device_type, counting_backend(kernel.operation, device_type)))
        yield


def count_macs(model, forward, device_type):
    """Multiply-adds of ``forward()``, a call that runs ``model`` once on ``device_type`` tensors.

    The model is put in eval mode (restored after), gradients are off, and every SS2D scans on a
    counting kernel (``scan_kernels_for_counting``). Returns ``(MacCount, forward's output)``.
    """
    result = MacCount()
    was_training = model.training
    model.eval()
    modules = _ModuleStack(model)
    try:
        with (scan_kernels_for_counting(model, device_type), torch.no_grad(), modules,
              _FunctionCounter(result, modules), _OperatorCounter(result, modules)):
            output = forward()
    finally:
        model.train(was_training)
    return result, output


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def format_size(count):
    """A count as mmengine's complexity tools print it: 30.249M, 4.906G (three decimals, trailing
    zeros dropped)."""
    for scale, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(count) > scale / 10:
            return f'{count / scale:.3f}'.rstrip('0').rstrip('.') + suffix
    return str(count)


def format_flops(macs):
    """Multiply-adds in G from 0.1G up, as the official tables give them (948.78G, not 0.949T)."""
    if abs(macs) > 1e8:
        return f'{macs / 1e9:.3f}'.rstrip('0').rstrip('.') + 'G'
    return format_size(macs)


def module_table(model, count, max_depth):
    """Rows (name, params, MACs, share of the total) for the modules of ``model`` nested at most
    ``max_depth`` deep (``backbone`` is 1, ``backbone.layers.0`` 3), in definition order; modules
    with neither parameters nor multiply-adds are left out."""
    rows = []
    for name, module in model.named_modules():
        depth = name.count('.') + 1 if name else 0
        if depth > max_depth:
            continue
        params = count_parameters(module)
        macs = count.module_total(name)
        if params or macs:
            rows.append((name or '(model)', params, macs,
                         macs / count.total if count.total else 0.0))
    return rows


def format_table(rows):
    width = max(len('module'), *(len(row[0]) for row in rows))
    lines = [f'{"module":<{width}}  {"params":>10}  {"FLOPs":>10}  {"share":>7}',
             '-' * (width + 33)]
    for name, params, macs, share in rows:
        lines.append(f'{name:<{width}}  {format_size(params):>10}  {format_flops(macs):>10}  '
                     f'{100 * share:6.2f}%')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------
# From a config (needs mmengine and the config's task package)
# ------------------------------------------------------------------------------------------------


@dataclass
class ConfigCount:
    """``count_config``'s answer: the count, the model's parameters, what was counted."""
    count: MacCount
    params: int
    input_shape: tuple
    scope: str
    device: str
    covers: str
    model: object = None
    notes: list = field(default_factory=list)


def load_model_config(config_path, cfg_options=None):
    """The checked config (``--cfg-options`` merged, SyncBN as BN) and its task scope.

    Raises ``vmamba_mm.config.ConfigError`` for a missing file or a bad ``--cfg-options`` key.
    """
    import vmamba_mm  # noqa: F401  (registers VSSM in the task registries)
    from vmamba_mm.engine.runner import load_config, replace_sync_batchnorm
    cfg = load_config(config_path, cfg_options)
    replace_sync_batchnorm(cfg, 'none')  # eval-mode BN counts as SyncBN does
    return cfg, cfg.get('default_scope') or 'mmengine'


def build_model(cfg, scope):
    """The config's model in its scope's registry; no checkpoint is loaded."""
    import importlib

    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)


# torch.nn.init's in-place fillers; each takes the tensor first and returns it.
_INIT_FUNCTIONS = ('uniform_', 'normal_', 'trunc_normal_', 'constant_', 'ones_', 'zeros_',
                   'eye_', 'dirac_', 'xavier_uniform_', 'xavier_normal_', 'kaiming_uniform_',
                   'kaiming_normal_', 'orthogonal_', 'sparse_')


@contextlib.contextmanager
def weights_left_uninitialised():
    """Within the block ``torch.nn.init`` leaves every tensor as allocated: a model built only to
    be counted on meta tensors, which never read a weight, builds about ten times faster (random
    initialisation of a base model's 90M weights is most of its construction time)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _detector_samples(height, width):
    """One image's data sample as a detector's test pipeline gives it (image already resized to
    ``height`` x ``width``): what the RPN reads to place and clip its proposals."""
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width),
                             pad_shape=(height, width), batch_input_shape=(height, width),
                             scale_factor=(1.0, 1.0)))
    return [sample]


def _roi_counts(model):
    """Forward hooks that record how many RoIs each RoI extractor of a detector pooled."""
    counts = {}
    handles = []
    roi_head = getattr(model, 'roi_head', None)
    for name in ('bbox_roi_extractor', 'mask_roi_extractor'):
        extractor = getattr(roi_head, name, None)
        if extractor is None:
            continue

        def hook(module, args, output, name=name):
            counts[name] = counts.get(name, 0) + int(args[1].shape[0])

        handles.append(extractor.register_forward_hook(hook))
    return counts, handles


def _what_was_counted(model, scope, roi_counts):
    parts = [part for part in ('backbone', 'neck') if getattr(model, part, None) is not None]
    if scope == 'mmpretrain':
        parts += ['head'] if getattr(model, 'head', None) is not None else []
        return ', '.join(parts) + " (model(inputs, mode='tensor'))"
    if scope == 'mmseg':
        return ', '.join(parts + ['decode head']) + (
            " (mmseg's mode='tensor' forward; the auxiliary head is training-only and not "
            'counted)')
    if scope == 'mmdet':
        heads = []
        if getattr(model, 'rpn_head', None) is not None:
            heads.append('RPN head')
        if 'bbox_roi_extractor' in roi_counts:
            heads.append(f'RoI box head on {roi_counts["bbox_roi_extractor"]} proposals')
        if 'mask_roi_extractor' in roi_counts:
            heads.append(f'RoI mask head on {roi_counts["mask_roi_extractor"]}')
        if not heads and getattr(model, 'bbox_head', None) is not None:
            heads.append('bbox head')
        return ', '.join(parts + heads) + (
            " (mmdet's mode='tensor' forward; box decoding, NMS and RoIAlign count 0)")
    return ', '.join(parts) + " (model(inputs, mode='tensor'))"


def count_config(config_path, shape=None, cfg_options=None, device=None, seed=0):
    """Count the multiply-adds of a config's model on one image of ``shape`` (H, W).

    ``shape`` defaults to the task's size of the official tables (``DEFAULT_SHAPES``).
    ``device``: 'meta' (shapes only; the default, except for detectors), 'cpu' or 'cuda'.
    Detectors need real values (their RPN's proposals pass NMS) and run on the CPU by default,
    with random weights and a random image (``seed``).
    """
    cfg, scope = load_model_config(config_path, cfg_options)
    height, width = shape if shape is not None else DEFAULT_SHAPES.get(scope, (224, 224))
    if device is None:
        device = 'cpu' if scope == 'mmdet' else 'meta'
    if device == 'meta' and scope == 'mmdet':
        raise CountingError('a detector cannot be counted on the meta device: its RPN keeps '
                            'proposals by NMS over real scores; use --device cpu (or cuda).')
    if device == 'cuda' and not torch.cuda.is_available():
        raise CountingError('--device cuda: CUDA is not available here; use --device meta or '
                            'cpu.')
    # Random weights from ``seed`` (used where the model runs on data), the caller's RNG kept.
    with torch.random.fork_rng(devices=[]), (
            weights_left_uninitialised() if device == 'meta' else contextlib.nullcontext()):
        torch.manual_seed(seed)
        model = build_model(cfg, scope)
    smallest = smallest_input_side(model)
    if smallest is not None and min(height, width) < smallest:
        raise CountingError(f'--shape {height} {width}: the model takes images of at least '
                            f'{smallest}x{smallest}; give --shape H W (or one size S) with each '
                            f'side at least {smallest}.')
    params = count_parameters(model)
    model = model.to(device)
    if device == 'meta':
        inputs = torch.empty(1, 3, height, width, device='meta')
    else:
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(1, 3, height, width, generator=generator).to(device)
    samples = _detector_samples(height, width) if scope == 'mmdet' else None
    roi_counts, handles = _roi_counts(model) if scope == 'mmdet' else ({}, [])
    try:
        count, _ = count_macs(model, lambda: model(inputs, samples, mode='tensor'), device)
    finally:
        for handle in handles:
            handle.remove()
    notes = []
    if count.uncounted_operators:
        notes.append('operators without a rule, counted as 0: ' +
                     ', '.join(sorted(count.uncounted_operators)))
    return ConfigCount(count=count, params=params, input_shape=(3, height, width), scope=scope,
                       device=device, covers=_what_was_counted(model, scope, roi_counts),
                       model=model, notes=notes)
