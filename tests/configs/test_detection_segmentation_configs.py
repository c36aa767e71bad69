"""The Mask R-CNN (COCO) and UperNet (ADE20K) configs, built on the real mmdet / mmseg stack.

Nothing is mocked: configs load with mmengine, models build through the mmdet / mmseg registries,
losses, predictions and test-time augmentation run through mmdet / mmseg code, and official
checkpoints go through tools/model_converters/vmamba2mm.py.
"""
import copy
import importlib.util
import os
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.official import (CLASSIFIERS, DOWNSTREAM, DOWNSTREAM_BACKBONE_PARAMS,
                            DOWNSTREAM_DROP_PATH, SSM_PARAMETERS, random_official_state_dict)
from tests.paths import CONFIG_DIR, CONVERTER

CONFIGS = list(DOWNSTREAM)
DET_TINY = 'mask_rcnn/mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco'
SEG_TINY = 'upernet/upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512'


def arch_of(name):
    return re.search(r'vmamba-(\w+-s\dl\d+)_', name).group(1)


def is_detection(name):
    return name.startswith('mask_rcnn/')


def load_cfg(name):
    from mmengine.config import Config
    return Config.fromfile(os.path.join(CONFIG_DIR, f'{name}.py'))


def registry_for(cfg):
    """The MODELS registry the Runner would use for this config (after ``import vmamba_mm``)."""
    import vmamba_mm  # noqa: F401  (registers VSSM and the checkpoint loader)
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


def build_model(cfg, pretrained=False):
    """Build ``cfg.model`` as the Runner does; no pretrained file unless asked for (a missing one
    is an error at init_weights by design)."""
    model_cfg = copy.deepcopy(cfg.model)
    if not pretrained:
        model_cfg.backbone.init_cfg = None
    return registry_for(cfg).build(model_cfg)


# Random initialisation is most of the cost of a build on the CPU (seconds per model); the
# tests that need the plain tiny models share one build each and work on deep copies.
_BUILT = {}
SHARED_BUILDS = (DET_TINY, SEG_TINY)


def fresh_model(name):
    """A model of config ``name`` as built from the file (no pretrained file), for the caller
    to change at will."""
    if name not in _BUILT:
        _BUILT[name] = build_model(load_cfg(name))
    return copy.deepcopy(_BUILT[name])


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """These tests run many small ops; with two OpenMP threads on a CPU another process is also
    using, every op waits for a busy core (measured here: 3.3 s instead of 0.08 s for one
    tiny-backbone forward). One thread is slower only by the second core on an idle machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module', autouse=True)
def release_shared_builds():
    yield
    _BUILT.clear()  # ~0.5 GB of weights that later test modules do not need


def run_converter(*args):
    """tools/model_converters/vmamba2mm.py's main(), in this process (a fresh interpreter with
    torch costs seconds per run)."""
    spec = importlib.util.spec_from_file_location('vmamba2mm_cli', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in args])


# --------------------------------------------------------------------------- configs, counts


def test_every_config_has_an_official_count():
    on_disk = sorted(f'{p.parent.name}/{p.stem}' for folder in ('mask_rcnn', 'upernet')
                     for p in Path(CONFIG_DIR, folder).glob('*.py'))
    assert on_disk == sorted(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_with_official_parameter_count(name):
    cfg = load_cfg(name)
    assert cfg.default_scope == ('mmdet' if is_detection(name) else 'mmseg')
    assert cfg.custom_imports.imports == ['vmamba_mm']
    arch = arch_of(name)
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.type == 'VSSM' and backbone_cfg.arch == arch
    assert tuple(backbone_cfg.out_indices) == (0, 1, 2, 3)
    assert backbone_cfg.drop_path_rate == DOWNSTREAM_DROP_PATH[arch]
    init_cfg = backbone_cfg.init_cfg
    assert init_cfg.type == 'Pretrained' and init_cfg.prefix == 'backbone.'
    assert init_cfg.checkpoint == f'checkpoints/vmamba-{arch}_in1k.pth'

    model = fresh_model(name) if name in SHARED_BUILDS else build_model(cfg)
    assert type(model).__name__ == ('MaskRCNN' if is_detection(name) else 'EncoderDecoder')
    assert type(model.backbone).__name__ == 'VSSM'
    official = DOWNSTREAM[name]
    assert official.arch == arch
    assert count(model) == official.params
    assert count(model.backbone) == DOWNSTREAM_BACKBONE_PARAMS[arch]
    channels = [CLASSIFIERS[arch].dims * 2**i for i in range(4)]
    assert model.backbone.out_channels == channels
    if is_detection(name):
        assert model.roi_head.bbox_head.num_classes == 80
        assert model.roi_head.mask_head.num_classes == 80
    else:
        assert model.decode_head.num_classes == 150
        assert model.auxiliary_head.num_classes == 150
        assert model.auxiliary_head.in_index == 2
        assert model.auxiliary_head.in_channels == channels[2]


def _check_optimizer(cfg, lr, weight_decay):
    wrapper = cfg.optim_wrapper
    # plain fp32 wrapper: trains on a CPU too; tools/train.py --amp switches on a GPU
    assert wrapper.type == 'OptimWrapper'
    assert wrapper.optimizer.type == 'AdamW'
    assert wrapper.optimizer.lr == lr and wrapper.optimizer.weight_decay == weight_decay
    assert tuple(wrapper.optimizer.betas) == (0.9, 0.999)
    paramwise = wrapper.paramwise_cfg
    assert paramwise.norm_decay_mult == 0 and paramwise.bias_decay_mult == 0
    for key in SSM_PARAMETERS:
        assert paramwise.custom_keys[f'.{key}'].decay_mult == 0


@pytest.mark.parametrize('name', [n for n in CONFIGS if is_detection(n)])
def test_mask_rcnn_recipe(name):
    cfg = load_cfg(name)
    three_x = '_ms-3x_' in name
    _check_optimizer(cfg, lr=1e-4, weight_decay=0.05)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.begin, warmup.end) == ('LinearLR', False, 0, 1000)
    assert steps.type == 'MultiStepLR' and steps.by_epoch and steps.gamma == 0.1
    assert steps.milestones == ([27, 33] if three_x else [8, 11])
    assert cfg.train_cfg.max_epochs == steps.end == (36 if three_x else 12)
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    train_types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    if three_x:  # DETR-style multi-scale: plain resize, or resize-crop-resize
        choice = cfg.train_dataloader.dataset.pipeline[train_types.index('RandomChoice')]
        plain, cropped = choice.transforms
        assert [t.type for t in cropped] == ['RandomChoiceResize', 'RandomCrop',
                                             'RandomChoiceResize']
        assert [s[0] for s in plain[0].scales] == list(range(480, 801, 32))
        assert 'Resize' not in train_types
    else:
        resize = cfg.train_dataloader.dataset.pipeline[train_types.index('Resize')]
        assert tuple(resize.scale) == (1333, 800) and 'RandomChoice' not in train_types
    test_resize = cfg.test_dataloader.dataset.pipeline[1]
    assert test_resize.type == 'Resize' and tuple(test_resize.scale) == (1333, 800)
    assert cfg.test_evaluator.metric == ['bbox', 'segm']
    assert cfg.tta_model.type == 'DetTTAModel'
    assert cfg.tta_pipeline[-1].type == 'TestTimeAug'


@pytest.mark.parametrize('name', [n for n in CONFIGS if not is_detection(n)])
def test_upernet_recipe(name):
    cfg = load_cfg(name)
    _check_optimizer(cfg, lr=6e-5, weight_decay=0.01)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.begin, warmup.end) == ('LinearLR', False, 0, 1500)
    assert (poly.type, poly.by_epoch, poly.power, poly.eta_min) == ('PolyLR', False, 1.0, 0.0)
    assert (poly.begin, poly.end) == (1500, 160000)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    crop = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop'][0]
    assert tuple(crop.crop_size) == (512, 512)
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.model.auxiliary_head.norm_cfg.type == 'SyncBN'
    assert cfg.model.test_cfg.mode == 'whole'
    assert cfg.tta_model.type == 'SegTTAModel'
    scales, flips = cfg.tta_pipeline[1].transforms[:2]
    assert [t.scale_factor for t in scales] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert sorted(t.prob for t in flips) == [0.0, 1.0]


@pytest.mark.parametrize('name', [DET_TINY, SEG_TINY])
def test_no_weight_decay_on_norms_biases_and_ssm_parameters(name):
    from mmengine.optim import build_optim_wrapper
    cfg = load_cfg(name)
    model = fresh_model(name)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    decay_of = {id(p): group['weight_decay'] for group in optimizer.param_groups
                for p in group['params']}
    full_decay = cfg.optim_wrapper.optimizer.weight_decay
    norm_types = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._NormBase)
    norm_params = {id(p) for m in model.modules() if isinstance(m, norm_types)
                   for p in m.parameters(recurse=False)}
    no_decay_leaves = set()
    for param_name, param in model.named_parameters():
        leaf = param_name.rsplit('.', 1)[-1]
        if leaf in SSM_PARAMETERS or leaf == 'bias' or id(param) in norm_params:
            assert decay_of[id(param)] == 0, param_name
            no_decay_leaves.add(leaf)
        else:
            assert decay_of[id(param)] == full_decay, param_name
    assert set(SSM_PARAMETERS) <= no_decay_leaves


# ------------------------------------------------------------------------- training, inference


def _det_inputs(height, width, scale=1.0, seed=0):
    """A batch of one synthetic image with two boxes and masks, as PackDetInputs makes it;
    ``scale`` is the factor the test pipeline would have resized the original image by."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[6., 8., 40., 50.], [20., 30., width - 4., height - 6.]])
    masks = np.zeros((2, height, width), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
    sample = DetDataSample(metainfo=dict(
        img_id=0, img_shape=(height, width),
        ori_shape=(round(height / scale), round(width / scale)),
        scale_factor=(scale, scale)))
    sample.gt_instances = InstanceData(
        bboxes=boxes, labels=torch.tensor([3, 17]),
        masks=BitmapMasks(masks, height, width))
    return dict(inputs=[image], data_samples=[sample])


def _seg_inputs(batch, height, width, seed=0):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8))
        labels = torch.randint(0, 150, (1, height, width), generator=g)
        labels[:, :4] = 255  # ignored pixels, as ADE20K's "other"
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def assert_inside(boxes, height, width):
    """Boxes (x1, y1, x2, y2) lie in the image, up to float rounding of rescales and flips."""
    tolerance = 1e-3
    assert boxes.min() >= -tolerance
    assert boxes[:, 0::2].max() <= width + tolerance
    assert boxes[:, 1::2].max() <= height + tolerance


def _assert_backbone_learns(model):
    grads = {name: p.grad for name, p in model.backbone.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [name for name, g in grads.items() if g is None]
    assert grads['patch_embed.0.weight'].abs().sum() > 0
    assert grads['layers.0.blocks.0.op.A_logs'].abs().sum() > 0


# The box head costs 13 GMACs per image for the 1000 proposals the configs keep; 100 proposals
# make the same code path a CPU test.
TEST_PROPOSALS = 100


def test_mask_rcnn_loss_and_predict_step():
    torch.manual_seed(0)
    model = fresh_model(DET_TINY)
    model.train()
    data = model.data_preprocessor(_det_inputs(96, 64), True)
    assert data['inputs'].shape == (1, 3, 96, 64)
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    _assert_backbone_learns(model)

    model.eval()
    # A random head scores every class near 1/81, under the 0.05 threshold; let the 10 best
    # through (the mask head's cost grows with the number of detections).
    model.roi_head.test_cfg.score_thr = 0.0
    model.roi_head.test_cfg.max_per_img = 10
    model.rpn_head.test_cfg.max_per_img = TEST_PROPOSALS
    # the image was resized by 0.5 from 192x128: predictions come back at the original size
    with torch.no_grad():
        [prediction] = model.test_step(_det_inputs(96, 64, scale=0.5))
    instances = prediction.pred_instances
    assert len(instances) == 10
    assert instances.bboxes.shape == (10, 4) and instances.scores.shape == (10, )
    assert instances.labels.min() >= 0 and instances.labels.max() < 80
    assert instances.masks.shape == (10, 192, 128) and instances.masks.dtype == torch.bool
    assert_inside(instances.bboxes, 192, 128)


def test_upernet_loss_and_predict_step():
    torch.manual_seed(0)
    model = fresh_model(SEG_TINY)
    # small crops keep this a CPU test; the config pads batches to 512x512
    model.data_preprocessor.size = (64, 64)
    model.train()
    # two images: BN statistics of the 1x1 pyramid-pooling branch need more than one value.
    # SyncBN without a process group computes plain BN, as on one GPU.
    data = model.data_preprocessor(_seg_inputs(2, 56, 64), True)
    assert data['inputs'].shape == (2, 3, 64, 64)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    _assert_backbone_learns(model)

    model.eval()
    with torch.no_grad():
        [prediction] = model.test_step(_seg_inputs(1, 48, 60))
    assert prediction.seg_logits.data.shape == (150, 48, 60)
    assert prediction.pred_sem_seg.shape == (48, 60)
    labels = prediction.pred_sem_seg.data
    assert labels.min() >= 0 and labels.max() < 150


# ------------------------------------------------------------------------------ test-time aug


def _tta_data(cfg, results, transforms=None):
    """Run the config's tta_pipeline on one image and collate it as the test dataloader does."""
    from mmengine.dataset import Compose, pseudo_collate
    registry_for(cfg)  # the pipeline's transforms come from the config's scope
    pipeline = Compose(transforms if transforms is not None else cfg.tta_pipeline)
    return pseudo_collate([pipeline(results)])


def test_upernet_tta_output_matches_image(tmp_path):
    import mmcv
    cfg = load_cfg(SEG_TINY)
    # small: the 12 views run the full UperNet head, heavy on a CPU
    height, width = 32, 40
    rng = np.random.default_rng(0)
    image_path, label_path = tmp_path / 'scene.jpg', tmp_path / 'scene.png'
    mmcv.imwrite(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), str(image_path))
    mmcv.imwrite(rng.integers(0, 151, (height, width), dtype=np.uint8), str(label_path))
    # what ADE20KDataset puts into each sample
    data = _tta_data(cfg, dict(img_path=str(image_path), seg_map_path=str(label_path),
                               reduce_zero_label=True, seg_fields=[]))
    assert len(data['inputs']) == 12  # 6 scales x 2 flips
    sizes = sorted({tuple(view[0].shape[1:]) for view in data['inputs']})
    assert sizes[0] == (16, 20) and sizes[-1] == (56, 70)

    tta_model = registry_for(cfg).build(dict(**cfg.tta_model, module=fresh_model(SEG_TINY)))
    tta_model.eval()
    with torch.no_grad():
        [prediction] = tta_model.test_step(data)
    assert prediction.pred_sem_seg.shape == (height, width)
    assert prediction.gt_sem_seg.shape == (height, width)
    assert prediction.img_path == str(image_path)


def _det_tta_setup(tmp_path, cfg):
    """The config's tta_pipeline with its 800..1200-pixel scales made small enough for a CPU
    test, run on one generated image."""
    import mmcv
    height, width = 80, 112
    image_path = tmp_path / 'street.jpg'
    rng = np.random.default_rng(1)
    mmcv.imwrite(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), str(image_path))
    pipeline = copy.deepcopy(cfg.tta_pipeline)
    resizes = pipeline[1].transforms[0]
    assert [tuple(t.scale) for t in resizes] == [(1333, 800), (666, 400), (2000, 1200)]
    for resize, scale in zip(resizes, [(160, 96), (112, 64), (224, 128)]):
        resize.scale = scale
    results = dict(img_path=str(image_path), img_id=0,
                   instances=[dict(bbox=[10., 12., 60., 50.], bbox_label=2, ignore_flag=0)])
    return _tta_data(cfg, results, pipeline), (height, width)


def test_mask_rcnn_tta_is_box_only(tmp_path):
    cfg = load_cfg(DET_TINY)
    data, (height, width) = _det_tta_setup(tmp_path, cfg)
    assert len(data['inputs']) == 6  # 3 scales x 2 flips
    assert {view[0].metainfo['flip'] for view in data['data_samples']} == {True, False}

    # mmdet 3.3.0's DetTTAModel refuses predictions with masks, which Mask R-CNN always makes
    # (an empty mask tensor when nothing passes the score threshold, as here)
    full = registry_for(cfg).build(dict(**cfg.tta_model, module=fresh_model(DET_TINY)))
    full.module.rpn_head.test_cfg.max_per_img = TEST_PROPOSALS
    full.eval()
    with torch.no_grad(), pytest.raises(AssertionError, match='instance segmentation'):
        full.test_step(data)

    # what the config documents for --tta: the mask branch off, boxes merged over all views
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # let a random head's boxes through
    cfg.model.test_cfg.rpn.max_per_img = TEST_PROPOSALS
    boxes_only = registry_for(cfg).build(dict(**cfg.tta_model, module=build_model(cfg)))
    boxes_only.eval()
    with torch.no_grad():
        [prediction] = boxes_only.test_step(data)
    instances = prediction.pred_instances
    assert 0 < len(instances) <= cfg.tta_model.tta_cfg.max_per_img
    assert 'masks' not in instances
    assert instances.bboxes.shape == (len(instances), 4)
    assert_inside(instances.bboxes, height, width)


# ------------------------------------------------------------------- official checkpoints


def _official_dense_checkpoint(name, official_keys, seed):
    """A state dict laid out as the official detection / segmentation releases store it: the
    classification backbone keys (official names) less ``classifier.*``, one ``outnorm{i}`` per
    stage, and the neck and head keys of the mmdet / mmseg model."""
    arch = arch_of(name)
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    fresh_model(name)  # builds the shared model once
    for key, shape in official_keys[CLASSIFIERS[arch].constructor]['state_dict'].items():
        if not key.startswith('classifier.'):
            state[f'backbone.{key}'] = torch.randn(shape, generator=g)
    for i in range(4):
        dim = CLASSIFIERS[arch].dims * 2**i
        state[f'backbone.outnorm{i}.weight'] = torch.randn(dim, generator=g)
        state[f'backbone.outnorm{i}.bias'] = torch.randn(dim, generator=g)
    for key, value in _BUILT[name].state_dict().items():
        if not key.startswith('backbone.'):
            state[key] = torch.randn(value.shape, generator=g).to(value.dtype)
    return state


@pytest.mark.parametrize('name', [DET_TINY, SEG_TINY])
def test_converted_official_checkpoint_loads_strictly(name, official_keys, tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint
    state = _official_dense_checkpoint(name, official_keys, seed=3)
    official = tmp_path / 'official.pth'
    # as mmdet / mmseg runners save it: weights under state_dict beside meta and optimizer state
    torch.save({'meta': {'epoch': 12, 'mmdet_version': '3.3.0'}, 'state_dict': state,
                'optimizer': {'state': {}, 'param_groups': []}}, official)
    converted = tmp_path / 'converted.pth'
    assert run_converter(official, converted) == 0

    model = fresh_model(name)
    # strict: any missing or unexpected key raises
    load_checkpoint(model, str(converted), map_location='cpu', strict=True)
    own = model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key


def test_backbone_init_from_converted_classification_checkpoint(tmp_path):
    """The workflow the configs document: convert the official ImageNet classifier, point
    init_cfg at it, and the backbone starts from its weights."""
    cfg = load_cfg(DET_TINY)
    official = random_official_state_dict('vmamba_tiny_s1l8', seed=5)
    source = tmp_path / 'vssm1_tiny_0230s_ckpt_epoch_264.pth'
    torch.save({'model': official, 'epoch': 264, 'max_accuracy': 82.6}, source)
    converted = tmp_path / 'checkpoints' / 'vmamba-tiny-s1l8_in1k.pth'
    assert run_converter(source, converted) == 0

    cfg.model.backbone.init_cfg.checkpoint = str(converted)
    model = build_model(cfg, pretrained=True)
    model.init_weights()
    own = model.backbone.state_dict()
    for key, value in official.items():
        if key.startswith('classifier.'):
            continue
        assert torch.equal(own[key], value), key
    # the classifier's norm is the last stage's output norm
    assert torch.equal(own['outnorm3.weight'], official['classifier.norm.weight'])

    # a file that is not there stops the run instead of training from random weights
    unloaded = fresh_model(DET_TINY)
    unloaded.backbone.init_cfg = dict(cfg.model.backbone.init_cfg,
                                      checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        unloaded.init_weights()
