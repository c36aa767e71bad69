"""The U-Mamba2-style segmentor in mmseg: its loss and predict steps with and without clicks, deep
supervision's weighting, nnU-Net's soft Dice loss against a hand-computed value, and a few
training steps under bf16 autocast that stay finite."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip('mmseg')

from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from vmamba_mm.models.umamba2 import pad_clicks  # noqa: E402
from vmamba_mm.registry import register_all_modules  # noqa: E402

NUM_CLASSES = 3
SIZE = 32


class ScopedModels:
    """mmseg's MODELS, building under mmseg's default scope (its data preprocessor)."""

    def build(self, config):
        from mmengine.registry import DefaultScope
        from mmseg.registry import MODELS
        with DefaultScope.overwrite_default_scope('mmseg'):
            return MODELS.build(ConfigDict(config))


@pytest.fixture(scope='module')
def models():
    register_all_modules()
    return ScopedModels()


def segmentor_config(clicks=False, deep_supervision=True, click_stages=(-1, ), input_maps=None):
    channels = (8, 16, 32)
    return dict(
        type='PromptedEncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='UMamba2', stage_channels=channels, blocks_per_stage=(1, 1, 1),
                      mamba=dict(d_state=8, headdim=16, chunk_size=16),
                      clicks=dict(num_classes=NUM_CLASSES, num_heads=2, stages=click_stages,
                                  input_maps=input_maps) if clicks else None),
        decode_head=dict(type='UMamba2Head', in_channels=channels, num_classes=NUM_CLASSES,
                         deep_supervision=deep_supervision,
                         loss_decode=[dict(type='CrossEntropyLoss', loss_weight=1.0),
                                      dict(type='SoftDiceLoss', loss_weight=1.0)]),
        test_cfg=dict(mode='whole'))


def samples(batch, clicks=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for index in range(batch):
        meta = dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE))
        if clicks is not None:
            meta['clicks'] = clicks[index]
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, NUM_CLASSES, (1, SIZE, SIZE), generator=generator))
        out.append(sample)
    return out


def test_soft_dice_matches_a_hand_computed_value(models):
    loss = models.build(dict(type='SoftDiceLoss', smooth=0.0))
    # two pixels, classes 0 and 1 (and one unlabelled pixel that must not count)
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])).T.reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    # class 1: overlap 0.6, |P| = 0.2 + 0.6, |G| = 1 -> dice 1.2 / 1.8; background left out
    assert math.isclose(float(loss(logits, labels)), 1 - 1.2 / 1.8, rel_tol=1e-6)
    with_background = models.build(dict(type='SoftDiceLoss', smooth=0.0,
                                        include_background=True))
    # class 0: overlap 0.8, |P| = 0.8 + 0.4, |G| = 1 -> dice 1.6 / 2.2
    expected = 1 - (1.6 / 2.2 + 1.2 / 1.8) / 2
    assert math.isclose(float(with_background(logits, labels)), expected, rel_tol=1e-6)


def test_the_loss_and_predict_steps(models):
    torch.manual_seed(0)
    model = models.build(segmentor_config())
    images = torch.rand(2, 3, SIZE, SIZE)
    losses = model.loss(images, samples(2))
    assert set(losses) == {'decode.loss_ce', 'decode.loss_dice', 'decode.acc_seg'}
    total = losses['decode.loss_ce'] + losses['decode.loss_dice']
    total.backward()
    assert all(p.grad is not None for p in model.backbone.mamba.parameters())
    model.eval()
    with torch.no_grad():
        predicted = model.predict(images, samples(2))
    assert predicted[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)
    assert predicted[0].seg_logits.data.shape == (NUM_CLASSES, SIZE, SIZE)


def test_deep_supervision_is_nnunets_weighted_sum(models):
    torch.manual_seed(0)
    model = models.build(segmentor_config(deep_supervision=True))
    head = model.decode_head
    features = model.extract_feat(torch.rand(2, 3, SIZE, SIZE))
    batch = samples(2)
    losses = head.loss(features, batch, None)
    decoded = head.decode(features)
    # three stages: decoder stages at 1/2 (the coarsest, weight 0) and full resolution
    assert len(head.side_seg) == 0 and len(decoded) == 2
    main = head.loss_by_feat(head.cls_seg(head.final(decoded[-1])), batch)
    torch.testing.assert_close(losses['loss_ce'], main['loss_ce'])


def test_deep_supervision_weights_with_side_outputs(models):
    torch.manual_seed(0)
    config = segmentor_config()
    channels = (8, 8, 16, 32)
    config['backbone'].update(stage_channels=channels, blocks_per_stage=(1, 1, 1, 1))
    config['decode_head'].update(in_channels=channels)
    model = models.build(config)
    head = model.decode_head
    features = model.extract_feat(torch.rand(2, 3, SIZE, SIZE))
    batch = samples(2)
    decoded = head.decode(features)
    main = head.loss_by_feat(head.cls_seg(head.final(decoded[-1])), batch)['loss_ce']
    side = head.loss_by_feat(head.side_seg[0](decoded[1]), batch)['loss_ce']
    # weights 1 (full resolution) and 1/2 (1/2 resolution); the 1/4 stage's is 0
    torch.testing.assert_close(head.loss(features, batch, None)['loss_ce'],
                               (main + 0.5 * side) / 1.5)


def clicks_change_only_their_sample(model):
    """Predicts two images with a click on the first and none on the second, and without clicks;
    checks that only the first image's logits change. Returns the images and clicks."""
    images = torch.rand(2, 3, SIZE, SIZE)
    clicks = [np.array([[4.0, 5.0, 1.0]], dtype=np.float32), np.zeros((0, 3), np.float32)]
    model.eval()
    with torch.no_grad():
        prompted = model.predict(images, samples(2, clicks))
        unprompted = model.predict(images, samples(2))
    assert not torch.allclose(prompted[0].seg_logits.data, unprompted[0].seg_logits.data)
    torch.testing.assert_close(prompted[1].seg_logits.data, unprompted[1].seg_logits.data)
    return images, clicks


@pytest.mark.parametrize('stages', [(-1, ), (0, 2)], ids=['bottleneck', 'full-and-bottleneck'])
def test_clicks_reach_the_backbone_in_loss_and_predict(models, stages):
    torch.manual_seed(0)
    model = models.build(segmentor_config(clicks=True, click_stages=stages))
    assert sorted(model.backbone.click_prompts) == sorted(str(s % 3) for s in stages)
    for prompt in model.backbone.click_prompts.values():
        torch.nn.init.normal_(prompt.out_proj.weight)
    images, clicks = clicks_change_only_their_sample(model)
    with torch.no_grad():
        prompted_loss = model.loss(images, samples(2, clicks))['decode.loss_ce']
        unprompted_loss = model.loss(images, samples(2))['decode.loss_ce']
    assert not torch.allclose(prompted_loss, unprompted_loss)
    model.test_cfg = ConfigDict(mode='slide', crop_size=(16, 16), stride=(16, 16))
    with pytest.raises(ValueError, match="mode='slide' runs the model on crops"):
        model.predict(images, samples(2, clicks))


def test_input_click_maps_reach_the_stem_in_loss_and_predict(models):
    torch.manual_seed(0)
    model = models.build(segmentor_config(clicks=True, click_stages=(),
                                          input_maps=dict(radius=3.0)))
    assert not model.backbone.click_prompts and model.backbone.takes_clicks
    assert model.backbone.stem.conv.in_channels == 3 + NUM_CLASSES
    images, clicks = clicks_change_only_their_sample(model)
    with torch.no_grad():
        # what the stem saw: the image and the maps (all zero without clicks)
        maps = model.backbone.click_maps(*pad_clicks(clicks, 'cpu'), (SIZE, SIZE))
        stem_input = torch.cat([model.data_preprocessor(dict(inputs=list(images)))['inputs'],
                                maps], dim=1)
        expected = model.backbone.stem(stem_input)
        seen = {}
        hook = model.backbone.stem.register_forward_hook(
            lambda module, args, output: seen.setdefault('stem', output))
        model.predict(images, samples(2, clicks))
        hook.remove()
    torch.testing.assert_close(seen['stem'], expected)
    loss = model.loss(images, samples(2, clicks))
    loss['decode.loss_ce'].backward()
    assert model.backbone.stem.conv.weight.grad[:, 3:].abs().sum() > 0


def test_a_click_stage_that_does_not_exist_is_named(models):
    with pytest.raises(ValueError, match=r'clicks stage 3 is not one of the 3 stages \(0..2, or '
                                         r'-1 for the bottleneck\)'):
        models.build(segmentor_config(clicks=True, click_stages=(3, )))


def test_a_few_training_steps_stay_finite_under_bf16_autocast(models):
    torch.manual_seed(0)
    model = models.build(segmentor_config(clicks=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    images = 50 * torch.rand(2, 3, SIZE, SIZE)
    clicks = [np.array([[4.0, 5.0, 1.0], [20.0, 9.0, 2.0]], np.float32), None]
    for step in range(3):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model.loss(images, samples(2, clicks, seed=step))
        total = sum(v for k, v in losses.items() if k.startswith('decode.loss'))
        assert torch.isfinite(total), (step, losses)
        optimizer.zero_grad()
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None), step
        optimizer.step()


def brute_force_interior(region):
    """(row, col) of the region pixel farthest from every pixel outside it (the image border
    outside too), the first in raster order: distances computed pair by pair."""
    height, width = region.shape
    outside = [(r, c) for r in range(-1, height + 1) for c in range(-1, width + 1)
               if not (0 <= r < height and 0 <= c < width) or not region[r, c]]
    best, where = -1.0, None
    for r, c in zip(*np.nonzero(region)):
        depth = min(math.hypot(r - o_r, c - o_c) for o_r, o_c in outside)
        if depth > best:
            best, where = depth, (int(r), int(c))
    return where


def test_error_clicks_go_to_the_largest_wrong_region_with_its_true_class(models):
    from scipy import ndimage
    torch.manual_seed(0)
    config = segmentor_config(clicks=True, click_stages=(), input_maps=dict(radius=3.0))
    model = models.build(dict(config, test_cfg=dict(mode='whole', error_clicks=1))).eval()
    images = torch.rand(1, 3, SIZE, SIZE)
    truth = torch.zeros(1, SIZE, SIZE, dtype=torch.long)
    truth[0, 3:20, 5:29] = 2
    truth[0, 24:30, 2:9] = 1

    def sample():
        one = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
                                          ori_shape=(SIZE, SIZE)))
        one.gt_sem_seg = PixelData(data=truth.clone())
        return one

    with torch.no_grad():
        before = model.encode_decode(images, [sample().metainfo]).argmax(1)[0]
    # the oracle: the largest 8-connected region of one true class that the prediction gets
    # wrong, its deepest pixel, the true class there
    wrong = (before != truth[0]).numpy()
    regions = []
    for cls in range(NUM_CLASSES):
        components, count = ndimage.label(wrong & (truth[0].numpy() == cls),
                                          structure=np.ones((3, 3)))
        regions += [(int((components == i).sum()), cls, components == i)
                    for i in range(1, count + 1)]
    size, cls, region = max(regions, key=lambda r: r[0])
    row, col = brute_force_interior(region)
    clicked = sample()
    model.predict(images, [clicked])
    np.testing.assert_allclose(clicked.metainfo['clicks'], [[col, row, cls]])
    assert truth[0, row, col] == cls and before[row, col] != cls

    # training: one more click per sample, from the model's own prediction, then the loss
    model.train_cfg = ConfigDict(error_clicks=1)
    model.train()
    batch = samples(2, [np.array([[4.0, 5.0, 1.0]], np.float32), None])
    losses = model.loss(images.expand(2, -1, -1, -1), batch)
    assert torch.isfinite(losses['decode.loss_ce'])
    assert [len(s.metainfo['clicks']) for s in batch] == [2, 1]
    without_truth = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE)))
    with pytest.raises(ValueError, match="error_clicks needs each data sample's gt_sem_seg"):
        model.eval().predict(images, [without_truth])
