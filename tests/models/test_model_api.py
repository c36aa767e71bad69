"""The timm-style model API of create_model models: feature order, copying and pickling after CPU
inference, gradient checkpointing, no_weight_decay, forward_features/head/intermediates."""
import copy
import io
import os

import pytest
import torch
import torch.nn.functional as F

import vmamba_mm
from tests.paths import CONFIG_DIR
from vmamba_mm.models import ARCH_SETTINGS, VSSM
from vmamba_mm.models import layers as model_layers

# Two released layouts shrunk to a block or two per stage, to keep the tests fast: the s1l8 one
# (ln2d, conv stem, v3 downsample, MLP) and the vanilla one (gated SS2D, v1 stem and patch
# merging, no MLP).
SMALL_ARCHS = {
    's1l8-like': dict(ARCH_SETTINGS['tiny-s1l8'], depths=[1, 1, 2, 1], dims=16),
    'vanilla-like': dict(ARCH_SETTINGS['vanilla-tiny'], depths=[1, 1, 1, 1], dims=16,
                         ssm_d_state=4),
}
SIZE = 32


def _image(seed=0, batch=1):
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _small_model(arch, seed=0, **kwargs):
    torch.manual_seed(seed)
    return vmamba_mm.create_model(SMALL_ARCHS[arch], **kwargs)


def _channels_last_layer_norm(x):
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2]).permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------- feature order


def test_feature_maps_come_in_the_order_out_indices_names():
    # The case of the issue: maps and feature_info agree, both in the order named.
    model = vmamba_mm.create_model('tiny-s1l8', features_only=True, out_indices=(3, 1)).eval()
    x = _image()
    with torch.no_grad():
        maps = model(x)
    assert model.feature_info.channels() == [768, 192]
    assert model.feature_info.reduction() == [32, 8]
    assert [entry['index'] for entry in model.feature_info] == [3, 1]
    assert [tuple(m.shape) for m in maps] == [
        (1, channels, SIZE // stride, SIZE // stride) for channels, stride in
        zip(model.feature_info.channels(), model.feature_info.reduction())]

    # The same maps as in ascending order, swapped.
    asked = _small_model('s1l8-like', features_only=True, out_indices=(3, 1)).eval()
    ascending = vmamba_mm.create_model(SMALL_ARCHS['s1l8-like'], features_only=True,
                                       out_indices=(1, 3)).eval()
    ascending.load_state_dict(asked.state_dict())
    with torch.no_grad():
        maps, reference = asked(x), ascending(x)
    assert torch.equal(maps[0], reference[1]) and torch.equal(maps[1], reference[0])

    # The mm backbone the same: maps in the order named, out_channels alike.
    backbone = VSSM(SMALL_ARCHS['s1l8-like'], out_indices=(2, 0)).eval()
    with torch.no_grad():
        outs = backbone(x)
    assert backbone.out_channels == [64, 16] == [o.shape[1] for o in outs]
    with pytest.raises(ValueError, match=r'out_indices \[3, -1\] name stage\(s\) \[3\]'):
        vmamba_mm.create_model('tiny-s1l8', features_only=True, out_indices=(3, -1))


# -------------------------------------------------------------------- copying after inference


def test_a_model_copies_and_pickles_after_cpu_inference():
    model = _small_model('s1l8-like').eval()
    x = _image(1)
    with torch.no_grad():
        before = model(x)
    keys = list(model.state_dict())

    ema = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    if model_layers._ONEDNN_LINEAR:  # the case of the issue: oneDNN weight copies were made
        assert any(layer in model_layers._ONEDNN_WEIGHTS for layer in model.modules())
    for other in (ema, loaded):
        assert list(other.state_dict()) == keys
        with torch.no_grad():
            torch.testing.assert_close(other(x), before, rtol=0, atol=0)
    assert keys == list(_small_model('s1l8-like').state_dict())  # nothing extra in the state

    # An EMA update in place changes the copy's results, not the original's.
    with torch.no_grad():
        for param in ema.parameters():
            param.mul_(0.5)
        assert not torch.allclose(ema(x), before)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


# -------------------------------------------------------------------- gradient checkpointing


def _saved_tensor_count(model, x):
    """Loss, gradients and the number of tensors autograd kept outside checkpointed regions."""
    saved = []

    def pack(tensor):
        saved.append(tensor.shape)
        return tensor

    torch.manual_seed(7)  # the drop-path draws
    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(x).logsumexp(-1).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, len(saved)


@pytest.mark.parametrize('arch', sorted(SMALL_ARCHS))
def test_grad_checkpointing_keeps_loss_and_gradients_and_saves_less(arch):
    model = _small_model(arch, drop_path_rate=0.3).train()
    x = _image(2, batch=2)
    loss, grads, kept = _saved_tensor_count(model, x)
    model.set_grad_checkpointing()
    assert model.backbone.with_cp
    loss_cp, grads_cp, kept_cp = _saved_tensor_count(model, x)
    torch.testing.assert_close(loss_cp, loss, rtol=1e-6, atol=1e-7)
    assert grads_cp.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_cp[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # The blocks' activations are recomputed in the backward pass, not kept.
    assert kept_cp < kept / 3, (kept_cp, kept)
    model.set_grad_checkpointing(False)
    assert _saved_tensor_count(model, x)[2] == kept


# ------------------------------------------------------------------------------ weight decay


@pytest.mark.parametrize('arch', sorted(SMALL_ARCHS))
def test_no_weight_decay_names_what_the_recipe_exempts(arch):
    """Against mmengine building the optimizer of the ImageNet schedule (paramwise_cfg)."""
    config = pytest.importorskip('mmengine.config')
    from mmengine.optim import build_optim_wrapper
    cfg = config.Config.fromfile(
        os.path.join(CONFIG_DIR, '_base_', 'schedules', 'imagenet_bs1024_adamw_vmamba.py'))
    cfg.optim_wrapper.type = 'OptimWrapper'  # the schedule's AMP wrapper asserts a GPU
    model = _small_model(arch, num_classes=10)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    decay_of = {id(p): group['weight_decay'] for group in optimizer.param_groups
                for p in group['params']}
    assert cfg.optim_wrapper.optimizer.weight_decay > 0
    exempt = {name for name, p in model.named_parameters() if decay_of[id(p)] == 0}
    assert model.no_weight_decay() == exempt
    leaves = {name.rsplit('.', 1)[-1] for name in exempt}
    assert {'A_logs', 'Ds', 'dt_projs_bias', 'bias'} <= leaves
    assert 'head.fc.bias' in exempt and 'head.fc.weight' not in exempt
    features = _small_model(arch, features_only=True)
    assert features.no_weight_decay() == {
        name for name in model.no_weight_decay() if name.startswith('backbone.')} | {
            f'backbone.outnorm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}


# ------------------------------------------------------------------ forward_features and co.


@pytest.mark.parametrize('arch', sorted(SMALL_ARCHS))
def test_forward_features_head_and_intermediates(arch):
    model = _small_model(arch, num_classes=10).eval()
    x = _image(3)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), logits, rtol=0, atol=0)
        torch.testing.assert_close(model.forward_head(features, pre_logits=True),
                                   features.mean((2, 3)), rtol=1e-6, atol=1e-6)

        # A feature extractor with the classifier's weights: its stage-3 norm is the
        # classifier's; those of stages 0-2 are fresh LayerNorms (weight 1, bias 0).
        extractor = _small_model(arch, seed=1, features_only=True).eval()
        missing, unexpected = extractor.load_state_dict(
            {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')},
            strict=False)
        assert sorted(missing) == [f'backbone.outnorm{i}.{p}' for i in range(3)
                                   for p in ('bias', 'weight')] and not unexpected
        expected = extractor(x)

        final, raw = model.forward_intermediates(x)
        torch.testing.assert_close(final, features, rtol=0, atol=0)
        assert len(raw) == 4
        for stage in range(3):
            torch.testing.assert_close(_channels_last_layer_norm(raw[stage]), expected[stage],
                                       rtol=1e-5, atol=1e-5)
        last_normed = model.forward_intermediates(x, indices=[-1], norm=True,
                                                  intermediates_only=True)
        torch.testing.assert_close(last_normed[0], expected[3], rtol=0, atol=0)

        # The last n, any order, early stop and channels-last give the same maps.
        assert [m.shape[1] for m in model.forward_intermediates(
            x, indices=2, intermediates_only=True)] == [64, 128]
        picked = model.forward_intermediates(x, indices=(2, 0), stop_early=True,
                                             output_fmt='NHWC', intermediates_only=True)
        torch.testing.assert_close(picked[0], raw[2].permute(0, 2, 3, 1), rtol=0, atol=0)
        torch.testing.assert_close(picked[1], raw[0].permute(0, 2, 3, 1), rtol=0, atol=0)

    with pytest.raises(ValueError, match='Stage 0 has no output norm'):
        model.forward_intermediates(x, indices=[0], norm=True)
    with pytest.raises(ValueError, match="output_fmt='NLC'"):
        model.forward_intermediates(x, output_fmt='NLC')
    with pytest.raises(ValueError, match='indices=5'):
        model.forward_intermediates(x, indices=5)
