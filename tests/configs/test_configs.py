# Copyright (c) vmamba-mm contributors. Licensed under the Apache License 2.0.
"""The nine ImageNet-1k classification configs, built on the real stack.

Everything goes through mmengine / mmpretrain (``Config.fromfile``, the
``mmpretrain`` registries, mmengine's optimizer-wrapper constructor, the
mmpretrain transforms); nothing is mocked.
"""
import copy
import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.official import CLASSIFIERS, SSM_PARAMETERS
from tests.paths import CONFIG_DIR, TOOLS_DIR

CLASSIFICATION_CONFIGS = Path(CONFIG_DIR) / 'vmamba'
ARCHS = list(CLASSIFIERS)
FORWARD_ARCHS = ['tiny-s1l8', 'vanilla-tiny']  # forward only on small models


def config_path(arch):
    return CLASSIFICATION_CONFIGS / f'vmamba-{arch}_8xb128_in1k.py'


@functools.lru_cache(maxsize=None)
def load_cfg(arch):
    from mmengine.config import Config
    return Config.fromfile(str(config_path(arch)))


def build_classifier(cfg):
    """Build ``cfg.model`` the way mmengine's Runner does."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    return MODELS.build(model_cfg)


@functools.lru_cache(maxsize=None)
def built_model(arch):
    torch.manual_seed(0)
    return build_classifier(load_cfg(arch))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_exactly_the_nine_configs():
    found = sorted(p.name for p in CLASSIFICATION_CONFIGS.glob('*_in1k.py'))
    assert found == sorted(config_path(a).name for a in ARCHS)


@pytest.mark.parametrize('arch', ARCHS)
def test_config_builds_with_official_param_count(arch):
    cfg = load_cfg(arch)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(
        imports=['vmamba_mm'], allow_failed_imports=False)
    assert cfg.model.backbone.type == 'VSSM'
    assert cfg.model.backbone.arch == arch
    assert cfg.model.backbone.out_indices == (3, )
    assert cfg.model.backbone.drop_path_rate == CLASSIFIERS[arch].drop_path_rate
    expected_c = CLASSIFIERS[arch].dims * 8  # the last stage's channels
    assert cfg.model.head.in_channels == expected_c

    model = built_model(arch)
    from mmpretrain.models import ImageClassifier
    assert isinstance(model, ImageClassifier)
    assert type(model.backbone).__name__ == 'VSSM'
    assert model.head.fc.in_features == expected_c
    assert model.head.fc.out_features == 1000
    assert num_params(model) == CLASSIFIERS[arch].params
    # the weight-decay exemptions target parameters that really exist
    names = [n for n, _ in model.named_parameters()]
    for key in SSM_PARAMETERS:
        assert any(n.endswith('.' + key) for n in names), key


@pytest.mark.parametrize('arch', ARCHS)
def test_official_recipe_values(arch):
    cfg = load_cfg(arch)

    # optimizer: AdamW lr 5e-4 per 512 -> 1e-3 at 1024, wd 0.05, AMP, clip 5
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper'
    assert ow.optimizer.type == 'AdamW'
    assert math.isclose(ow.optimizer.lr, 1e-3)
    assert ow.optimizer.weight_decay == 0.05
    assert ow.optimizer.eps == 1e-8
    assert tuple(ow.optimizer.betas) == (0.9, 0.999)
    assert ow.clip_grad == dict(max_norm=5.0)
    pw = ow.paramwise_cfg
    assert pw.norm_decay_mult == 0.0
    assert pw.bias_decay_mult == 0.0
    assert pw.flat_decay_mult == 0.0
    assert set(pw.custom_keys) == {'.' + k for k in SSM_PARAMETERS}
    assert all(v == dict(decay_mult=0.0) for v in pw.custom_keys.values())
    assert cfg.auto_scale_lr == dict(base_batch_size=1024)
    assert cfg.train_dataloader.batch_size * 8 == 1024

    # schedule: 300 epochs, 20 linear warm-up epochs, cosine, per iteration
    assert cfg.train_cfg.max_epochs == 300
    warm, cos = cfg.param_scheduler
    assert warm.type == 'LinearLR' and warm.end == 20
    assert math.isclose(warm.start_factor, 1e-3)  # 5e-7 per 512 -> 1e-6
    assert cos.type == 'CosineAnnealingLR'
    assert (cos.begin, cos.end) == (20, 300)
    assert math.isclose(cos.eta_min, 1e-5)  # 5e-6 per 512 -> 1e-5
    assert warm.convert_to_iter_based and cos.convert_to_iter_based

    # EMA 0.9999
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and math.isclose(ema[0].momentum, 1e-4)

    # Mixup 0.8 + CutMix 1.0, label smoothing 0.1
    assert cfg.model.train_cfg.augments == [
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]
    assert cfg.model.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert cfg.data_preprocessor.num_classes == 1000

    # data: RandAugment m9 mstd0.5 inc, erasing 0.25, no colour jitter,
    # eval short side 256 (bicubic) -> centre crop 224
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert 'ColorJitter' not in train
    assert train['RandomResizedCrop'].scale == 224
    assert train['RandomResizedCrop'].interpolation == 'bicubic'
    ra = train['RandAugment']
    assert (ra.policies, ra.num_policies, ra.total_level, ra.magnitude_level,
            ra.magnitude_std) == ('timm_increasing', 2, 10, 9, 0.5)
    assert ra.hparams.pad_val == [104, 116, 124]
    re = train['RandomErasing']
    assert (re.erase_prob, re.mode, re.min_area_ratio) == (0.25, 'rand', 0.02)
    assert math.isclose(re.max_area_ratio, 1 / 3)
    test = [t.type for t in cfg.val_dataloader.dataset.pipeline]
    assert test == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop',
                    'PackInputs']
    resize, crop = cfg.val_dataloader.dataset.pipeline[1:3]
    assert (resize.scale, resize.edge, resize.interpolation) == (256, 'short',
                                                                 'bicubic')
    assert crop.crop_size == 224
    for split in ('train', 'val'):
        ds = cfg[f'{split}_dataloader'].dataset
        assert ds.type == 'ImageNet' and ds.data_root == 'data/imagenet'
        assert ds.ann_file == f'meta/{split}.txt' and ds.data_prefix == split


@pytest.mark.parametrize('arch', ['tiny-s1l8', 'vanilla-tiny'])
def test_weight_decay_groups(arch):
    """mmengine's constructor exempts exactly norms, 1-D params, biases and
    the SSM parameters from weight decay (AMP swapped for plain OptimWrapper,
    as AmpOptimWrapper needs a GPU)."""
    from mmengine.optim import build_optim_wrapper

    cfg = load_cfg(arch)
    model = built_model(arch)
    ow_cfg = copy.deepcopy(cfg.optim_wrapper)
    ow_cfg.type = 'OptimWrapper'
    wrapper = build_optim_wrapper(model, ow_cfg)
    wd_of = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            wd_of[id(p)] = group['weight_decay']
    assert len(wd_of) == len(list(model.parameters()))
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm,
                  torch.nn.modules.batchnorm._BatchNorm)
    norm_params = {
        id(p)
        for m in model.modules() if isinstance(m, norm_types)
        for p in m.parameters(recurse=False)
    }
    n_decay = 0
    for name, p in model.named_parameters():
        exempt = (
            p.ndim <= 1 or name.endswith('.bias') or id(p) in norm_params
            or name.split('.')[-1] in SSM_PARAMETERS)
        assert wd_of[id(p)] == (0.0 if exempt else 0.05), name
        n_decay += not exempt
    assert n_decay > 0


@pytest.mark.parametrize('arch', FORWARD_ARCHS)
def test_forward_and_train_step(arch):
    from mmpretrain.structures import DataSample

    model = built_model(arch)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()

    # one training step through the data preprocessor: Mixup/CutMix give
    # soft targets, LabelSmoothLoss takes them, gradients reach the SSM.
    model.train()
    data = dict(
        inputs=[
            torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
            for _ in range(2)
        ],
        data_samples=[DataSample().set_gt_label(i) for i in (3, 7)])
    data = model.data_preprocessor(data, training=True)
    assert data['data_samples'][0].gt_score.shape == (1000, )
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [
        p.grad for n, p in model.named_parameters()
        if n.endswith('.A_logs')
    ]
    assert grads and all(g is not None for g in grads)
    model.zero_grad(set_to_none=True)


def test_pipelines_on_an_image(tmp_path):
    """The train and eval pipelines run through mmpretrain's transforms."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from PIL import Image

    cfg = load_cfg('tiny-s1l8')
    init_default_scope(cfg.default_scope)
    rng = np.random.default_rng(0)
    img_path = tmp_path / 'img.png'
    Image.fromarray(rng.integers(0, 256, (300, 400, 3),
                                 dtype=np.uint8)).save(img_path)
    for split in ('train', 'val'):
        pipeline = Compose(cfg[f'{split}_dataloader'].dataset.pipeline)
        out = pipeline(dict(img_path=str(img_path), gt_label=1))
        assert tuple(out['inputs'].shape) == (3, 224, 224), split
        assert out['data_samples'].gt_label.tolist() == [1]
    # eval: 300x400 -> short side 256 -> 256x341 -> centre 224
    val = Compose(cfg.val_dataloader.dataset.pipeline[:2])
    assert val(dict(img_path=str(img_path)))['img'].shape[:2] == (256, 341)


def _load_benchmark():
    path = Path(TOOLS_DIR) / 'analysis_tools' / 'benchmark.py'
    spec = importlib.util.spec_from_file_location('vmamba_benchmark', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_rejects_missing_config(capsys):
    bench = _load_benchmark()
    rc = bench.main(['configs/vmamba/no-such-config.py', '--device', 'cpu'])
    assert rc != 0
    assert 'no-such-config.py' in capsys.readouterr().err


def test_benchmark_smoke(capsys):
    bench = _load_benchmark()
    two_d = Path(CONFIG_DIR) / 'vmamba2d' / 'vmamba2d-tiny_8xb128_in1k.py'
    rc = bench.main([
        str(config_path('tiny-s1l8')), str(two_d), '--device', 'cpu', '--shape', '32',
        '32', '--warmup', '0', '--iters', '1', '--rounds', '1'
    ])
    assert rc == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines()
            if ln.startswith('vmamba-tiny-s1l8')]
    assert len(line) == 1
    assert f'{CLASSIFIERS["tiny-s1l8"].params:,}' in line[0]
    assert 'img/s' in line[0] and 'ms/iter' in line[0]
    # A second config is also given as a multiple of the first one's time.
    line = [ln for ln in out.splitlines() if ln.startswith('vmamba2d-tiny')]
    assert len(line) == 1 and 'the time of vmamba-tiny-s1l8_8xb128_in1k' in line[0]
