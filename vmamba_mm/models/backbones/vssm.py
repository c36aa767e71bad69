"""VSSM: the VMamba backbone, one definition for classification, detection and segmentation.

State-dict keys are the official ones (``patch_embed.*``, ``layers.{i}.blocks.{j}.*``,
``layers.{i}.downsample.*``) plus one norm per output stage, ``outnorm{i}``, as in the official
detection backbone. In a classifier, ``outnorm3`` is the official ``classifier.norm``.

Needs torch only. With mmengine installed it still behaves as an OpenMMLab backbone:
``init_cfg`` and ``init_weights()``, and the ``is_init`` flag that mmengine's
``BaseModule.init_weights`` reads before initialising a child.
"""
import copy
import importlib
import importlib.util
import logging

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from vmamba_kernels import dispatch

from ..layers import DropPath, Mlp, downsample, norm_layer, patch_embed
from ..mixers import build_mixer
from ..pretrained import load_pretrained_backbone
from .arch_checks import (check_drop_path_rate, check_frozen_stages, check_in_channels,
                          minimum_input_size, stage_indices)
from .vssm_arch import resolve_arch

logger = logging.getLogger(__name__)


def _dtype_mismatch_message(input_dtype, weight_dtype, device_type):
    if input_dtype in (torch.float16, torch.bfloat16):
        fixes = (f'convert the model (model.to({input_dtype})), or keep it in {weight_dtype} and '
                 f'run under torch.autocast({device_type!r}, dtype={input_dtype}) (mixed '
                 f'precision), or give {weight_dtype} input')
    else:
        fixes = f'convert the input (x.to({weight_dtype})) or the model (model.to({input_dtype}))'
    return f'VSSM input is {input_dtype} but its weights are {weight_dtype}; {fixes}.'


class VSSBlock(nn.Module):
    """x + DropPath(mixer(LN(x))), then x + DropPath(MLP(LN(x))) when mlp_ratio > 0.

    Args:
        channels: block width.
        mixer: the token mixer, a name registered in ``MIXERS`` or a dict with ``type`` and the
            mixer's options (see ``vmamba_mm.models.mixers``); kept as ``self.op``, the
            official state-dict prefix.
        mlp_ratio: MLP width over block width; 0 means no MLP (the vanilla archs).
        channel_first: memory layout of the maps, (B, C, H, W) or (B, H, W, C).
        scan_backend: backend name for the mixer's operations and the residual add + norm
            (None: the automatic choice per device).
        drop_path: stochastic depth rate of both branches.
    """

    def __init__(self, channels, *, mixer='ss2d', mlp_ratio=4.0, channel_first=False,
                 scan_backend=None, drop_path=0.0):
        super().__init__()
        self.channel_first = channel_first
        self.norm = norm_layer(channels, channel_first)
        self.op = build_mixer(mixer, channels, channel_first=channel_first,
                              scan_backend=scan_backend)
        self.drop_path = DropPath(drop_path)
        if mlp_ratio > 0:
            self.norm2 = norm_layer(channels, channel_first)
            self.mlp = Mlp(channels, int(channels * mlp_ratio), channel_first)
            # The residual add and the MLP's norm in one operation (one pass on GPUs).
            self.add_norm = dispatch.bind('add_layer_norm', scan_backend)
        else:
            self.mlp = None

    def forward(self, x):
        branch = self.drop_path(self.op(self.norm(x)))
        if self.mlp is None:
            return x + branch
        if x.device.type == 'meta':
            # Shapes only (FLOP counting), where no kernel runs: the same steps unfused.
            x = x + branch
            normed = self.norm2(x)
        else:
            x, normed = self.add_norm(branch, x, self.norm2.weight, self.norm2.bias,
                                      self.norm2.eps, self.channel_first)
        return x + self.drop_path(self.mlp(normed))


class VSSStage(nn.Module):

    def __init__(self, blocks, downsample_layer):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample_layer


def block_arguments(settings):
    """VSSBlock's keyword arguments from a resolved arch."""
    return dict(mixer=settings['mixer'], mlp_ratio=settings['mlp_ratio'])


def _init_cfg_list(init_cfg):
    if init_cfg is None:
        return []
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else init_cfg
    if not isinstance(cfgs, (list, tuple)) or not all(
            isinstance(cfg, dict) and 'type' in cfg for cfg in cfgs):
        raise TypeError(f'VSSM init_cfg must be None, a dict with a type, or a list of such '
                        f'dicts; got {init_cfg!r}.')
    return list(cfgs)


def _is_pretrained_cfg(cfg):
    kind = cfg['type']
    return kind == 'Pretrained' or getattr(kind, '__name__', None) == 'PretrainedInit'


# What the training recipe exempts from weight decay: configs/_base_/schedules/adamw_vmamba.py's
# paramwise_cfg as mmengine's DefaultOptimWrapperConstructor applies it (norm_decay_mult,
# bias_decay_mult and flat_decay_mult 0: every norm parameter, bias and 1-D parameter; custom
# keys: the SSM parameters below, which are 2-D but for Ds).
NO_DECAY_SSM_PARAMETERS = ('A_logs', 'Ds', 'dt_projs_bias')
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, _BatchNorm, _InstanceNorm)


def no_weight_decay_names(model):
    """The names of ``model``'s parameters the recipe trains without weight decay."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for name, param in module.named_parameters(recurse=False):
            if is_norm or name == 'bias' or param.ndim == 1 or name in NO_DECAY_SSM_PARAMETERS:
                names.add(f'{module_name}.{name}' if module_name else name)
    return names


class VSSM(nn.Module):
    """VMamba backbone.

    Args:
        arch: a released architecture name (see ``ARCH_SETTINGS``) or a dict of settings in the
            official constructor's keyword names (``depths``, ``dims``, ``ssm_d_state``,
            ``ssm_ratio``, ``ssm_dt_rank``, ``ssm_conv``, ``ssm_conv_bias``, ``forward_type``,
            ``mlp_ratio``, ``downsample_version``, ``patchembed_version``, ``norm_layer``,
            ``patch_size``), optionally with our ``gated`` / ``scan_order`` in place of
            ``forward_type``, ``scan_2d=True`` for 2DMamba's 2D scan on every route
            (2DVMamba; the official ``USE_V2D``), and ``mixer``, the blocks' token mixer
            ('ss2d' by default; a name or a dict, see ``vmamba_mm.models.mixers``).
        in_channels: image channels.
        out_indices: stages whose (normalised, NCHW) features are returned, taken before each
            stage's downsample; negative counts from the end. The maps come in the order
            named (``(3, 1)`` gives stage 3's map, then stage 1's; ``out_channels`` follows);
            a stage named twice is an error. Default: the last stage.
        frozen_stages: freeze the patch embedding (0) and stages ``0 .. frozen_stages-1``;
            -1 freezes nothing.
        norm_eval: keep BatchNorm layers in eval mode while training (VSSM itself has none;
            accepted for a uniform backbone API).
        drop_path_rate: stochastic depth rate at the last block (linear from 0). Default: the
            arch's published rate.
        with_cp: gradient checkpointing per block (``torch.utils.checkpoint``), where the
            input needs a gradient; also ``set_grad_checkpointing()``.
        channel_first: memory layout, (B, C, H, W) inside the blocks as the official 'ln2d' models,
            or (B, H, W, C) as 'ln'. Parameters and results are the same either way; the default
            (None) is channels-last, the faster one on the CPU.
        scan_backend: backend of the kernel operations for this model ('torch', 'reference',
            'cpp', 'triton', 'cuda'); None chooses by device. An operation without that backend
            runs its 'torch' one (logged).
        init_cfg: what ``init_weights()`` does: ``dict(type='Pretrained', checkpoint=PATH,
            prefix=None)`` loads a checkpoint strictly (see ``load_pretrained_backbone``); other
            types (mmengine initialisers such as ``Kaiming``) need mmengine. None: the
            initialisation done at construction stays.
    """

    def __init__(self, arch='tiny-s1l8', in_channels=3, out_indices=(-1, ), frozen_stages=-1,
                 norm_eval=False, drop_path_rate=None, with_cp=False, channel_first=None,
                 scan_backend=None, init_cfg=None):
        super().__init__()
        self.init_cfg = copy.deepcopy(init_cfg)
        _init_cfg_list(self.init_cfg)
        self._is_init = False
        settings = resolve_arch(arch)
        self.arch_name = arch if isinstance(arch, str) else 'custom arch'
        self.arch_settings = copy.deepcopy(settings)
        depths, dims = settings['depths'], settings['dims']
        self.num_stages = len(depths)
        check_in_channels(in_channels)
        out_indices = stage_indices(out_indices, self.num_stages)
        check_frozen_stages(frozen_stages, self.num_stages)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.in_channels = in_channels
        self.patch_size = settings['patch_size']
        # The layout changes neither parameters nor results (tested); channels-last runs faster
        # on the CPU, so it is the default whatever the official norm_layer was.
        self.channel_first = False if channel_first is None else bool(channel_first)
        self.dims = dims
        self.out_channels = [dims[i] for i in self.out_indices]
        if drop_path_rate is None:
            drop_path_rate = settings['drop_path_rate']
        check_drop_path_rate(drop_path_rate)
        self.min_input_size = minimum_input_size(settings)

        self.patch_embed = patch_embed(settings['patchembed_version'], in_channels, dims[0],
                                       self.patch_size, self.channel_first)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        block_settings = block_arguments(settings)
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            blocks = [
                VSSBlock(dims[i], drop_path=rates[first + j], channel_first=self.channel_first,
                         scan_backend=scan_backend, **block_settings) for j in range(depth)
            ]
            down = (downsample(settings['downsample_version'], dims[i], dims[i + 1],
                               self.channel_first) if i + 1 < self.num_stages else nn.Identity())
            self.layers.append(VSSStage(blocks, down))
        for i in self.out_indices:
            self.add_module(f'outnorm{i}', norm_layer(dims[i], self.channel_first))
        self._init_linear_layers()
        if not self.channel_first:
            self._store_conv_weights_channels_last()
        self._freeze_stages()

    def _init_linear_layers(self):
        # The official init: truncated-normal Linear weights, zero biases, unit LayerNorms.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def is_init(self):
        """Whether init_weights() ran; mmengine's BaseModule skips a child that says so."""
        return self._is_init

    @is_init.setter
    def is_init(self, value):
        self._is_init = value

    def init_weights(self):
        """Apply ``init_cfg``: other initialisers first, then Pretrained (it has the last word,
        as in mmengine's BaseModule)."""
        if self._is_init:
            logger.warning('init_weights of VSSM has been called more than once; ignored.')
            return
        cfgs = _init_cfg_list(self.init_cfg)
        pretrained = [cfg for cfg in cfgs if _is_pretrained_cfg(cfg)]
        others = [cfg for cfg in cfgs if not _is_pretrained_cfg(cfg)]
        if others:
            if importlib.util.find_spec('mmengine') is None:
                raise RuntimeError(
                    f"VSSM init_cfg type(s) {[cfg['type'] for cfg in others]} are mmengine "
                    f'initialisers, and mmengine is not installed: install mmengine, or use '
                    f"init_cfg=dict(type='Pretrained', checkpoint=PATH) or None.")
            importlib.import_module('mmengine.model').initialize(self, others)
        for cfg in pretrained:
            if 'checkpoint' not in cfg:
                raise KeyError(f"VSSM init_cfg {cfg!r} has no 'checkpoint': give the path of "
                               f'the weights to load.')
            # mmengine's own Pretrained init loads non-strictly and only warns; a backbone
            # that silently keeps random weights is worse than a stopped run.
            load_pretrained_backbone(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                                     map_location=cfg.get('map_location', 'cpu'))
        self._is_init = True

    def _store_conv_weights_channels_last(self):
        # The convs here read channels-last maps; with weights in the same memory format oneDNN
        # skips re-laying out the weights on every call (the stage-3 downsample's is 10 MB).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)

    def _freeze_stages(self):
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        for i in range(max(self.frozen_stages, 0)):
            frozen.append(self.layers[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'outnorm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def _check_input(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'VSSM expects images of shape (B, {self.in_channels}, H, W), got '
                             f'{tuple(x.shape)}.')
        height, width = x.shape[-2:]
        if height < self.patch_size or width < self.patch_size:
            raise ValueError(f'VSSM input of {height}x{width} is smaller than one '
                             f'{self.patch_size}x{self.patch_size} patch; the minimum is '
                             f'{self.patch_size}x{self.patch_size}.')
        if height < self.min_input_size or width < self.min_input_size:
            raise ValueError(f'VSSM input of {height}x{width} is smaller than the '
                             f'{self.min_input_size}x{self.min_input_size} this arch needs (its '
                             f"'v2' downsamples are unpadded stride-2 convs, each needing two "
                             f'pixels).')
        weights = self.patch_embed[0].weight
        if x.dtype != weights.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(_dtype_mismatch_message(x.dtype, weights.dtype, x.device.type))

    def _run_blocks(self, blocks, x):
        for block in blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    def set_grad_checkpointing(self, enable=True):
        """Checkpoint every block while training (``with_cp``): its activations are recomputed
        in the backward pass instead of kept."""
        self.with_cp = bool(enable)

    def no_weight_decay(self):
        """The parameter names the recipe trains without weight decay (norms, biases, 1-D
        parameters, ``A_logs``, ``Ds``, ``dt_projs_bias``)."""
        return no_weight_decay_names(self)

    def run_stages(self, x, stages, stop_early=False):
        """{stage: its map before the downsample} for ``stages``, in the blocks' layout and not
        normalised; see ``output_map``. ``stop_early``: run no stage past the last one named
        (otherwise every stage runs, as in ``forward``)."""
        self._check_input(x)
        last = max(stages) if stop_early and stages else self.num_stages - 1
        x = self.patch_embed(x)
        maps = {}
        for i, stage in enumerate(self.layers[:last + 1]):
            x = self._run_blocks(stage.blocks, x)
            if i in stages:
                maps[i] = x
            if i < last:
                x = stage.downsample(x)
        return maps

    def output_map(self, stage, x, norm=True, output_fmt='NCHW'):
        """``stage``'s map from ``run_stages`` through its output norm ``outnorm{stage}``
        (``norm``; only the ``out_indices`` stages have one), as an 'NCHW' or 'NHWC' tensor."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt={output_fmt!r}: VSSM maps come as 'NCHW' or 'NHWC'.")
        if norm:
            if not hasattr(self, f'outnorm{stage}'):
                raise ValueError(
                    f'Stage {stage} has no output norm in this model (only the out_indices '
                    f'stages {list(self.out_indices)} have one): ask for those stages, or for '
                    f'norm=False.')
            x = getattr(self, f'outnorm{stage}')(x)
        if self.channel_first and output_fmt == 'NHWC':
            x = x.permute(0, 2, 3, 1)
        elif not self.channel_first and output_fmt == 'NCHW':
            x = x.permute(0, 3, 1, 2)
        return x.contiguous()

    def forward(self, x):
        maps = self.run_stages(x, self.out_indices)
        return tuple(self.output_map(i, maps[i]) for i in self.out_indices)


def smallest_input_side(module):
    """The smallest image side every VSSM inside ``module`` takes (``min_input_size``, the
    largest of them), or None where it has no VSSM. The tools check a ``--shape`` with it before
    running, so that a too-small size is named with its flag instead of raised mid-forward."""
    sides = [sub.min_input_size for sub in module.modules() if isinstance(sub, VSSM)]
    return max(sides) if sides else None
