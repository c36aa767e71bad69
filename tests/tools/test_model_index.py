"""The model index: metafiles against the official figures and the configs on disk, the names in
mmpretrain (get_model, inference_model, ImageClassificationInferencer), the vmamba-mm://
checkpoint scheme, and the README tables rendered from the metafiles."""
import glob
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.official import CLASSIFIERS, DOWNSTREAM, VMAMBA_2D
from tests.paths import CONFIG_DIR, ROOT

TINY = 'vmamba-tiny-s1l8_8xb128_in1k'
# Official GFLOPs and top-1 of the nine classifiers (reference notes section 1; the GFLOPs to
# three decimals as the issue lists them).
OFFICIAL_GFLOPS = {
    'vanilla-tiny': 5.627, 'vanilla-small': 11.23, 'vanilla-base': 18.02,
    'tiny-s2l5': 4.858, 'small-s2l15': 8.716, 'base-s2l15': 15.359,
    'tiny-s1l8': 4.906, 'small-s1l20': 8.612, 'base-s1l20': 15.221,
}
OFFICIAL_TOP1 = {
    'vanilla-tiny': 82.2, 'vanilla-small': 83.5, 'vanilla-base': 83.7, 'tiny-s2l5': 82.5,
    'small-s2l15': 83.6, 'base-s2l15': 83.9, 'tiny-s1l8': 82.6, 'small-s1l20': 83.3,
    'base-s1l20': 83.8,
}
# box / mask AP, or mIoU single / multi-scale (reference notes section 2)
OFFICIAL_DENSE = {
    'mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco': (47.3, 42.7),
    'mask-rcnn_vmamba-tiny-s2l5_fpn_1x_coco': (47.4, 42.7),
    'mask-rcnn_vmamba-small-s2l15_fpn_1x_coco': (48.7, 43.7),
    'mask-rcnn_vmamba-base-s2l15_fpn_1x_coco': (49.2, 44.1),
    'mask-rcnn_vmamba-tiny-s1l8_fpn_ms-3x_coco': (48.8, 43.7),
    'mask-rcnn_vmamba-tiny-s2l5_fpn_ms-3x_coco': (48.9, 43.7),
    'mask-rcnn_vmamba-small-s2l15_fpn_ms-3x_coco': (49.9, 44.2),
    'upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512': (47.9, 48.8),
    'upernet_vmamba-tiny-s2l5_8xb2-160k_ade20k-512x512': (48.3, 48.6),
    'upernet_vmamba-small-s2l15_8xb2-160k_ade20k-512x512': (50.6, 51.2),
    'upernet_vmamba-base-s2l15_8xb2-160k_ade20k-512x512': (51.0, 51.6),
}


def _shipped_configs(pattern):
    return sorted(osp.splitext(osp.basename(path))[0]
                  for path in glob.glob(osp.join(CONFIG_DIR, pattern)))


def _metafile_models():
    import yaml
    with open(osp.join(ROOT, 'model-index.yml'), encoding='utf-8') as f:
        imports = yaml.safe_load(f)['Import']
    models = {}
    for metafile in imports:
        with open(osp.join(ROOT, metafile), encoding='utf-8') as f:
            for model in yaml.safe_load(f)['Models']:
                models[model['Name']] = model
    return models


def test_one_entry_per_shipped_config_with_the_official_figures():
    models = _metafile_models()
    shipped = (_shipped_configs('vmamba/*.py') + _shipped_configs('vmamba2d/*.py')
               + _shipped_configs('mask_rcnn/*.py') + _shipped_configs('upernet/*.py'))
    assert sorted(models) == sorted(shipped)  # no demo config, nothing missing
    for name, model in models.items():
        assert osp.splitext(osp.basename(model['Config']))[0] == name
        assert osp.isfile(osp.join(ROOT, model['Config'])), model['Config']
        assert model['Weights'].startswith('vmamba-mm://')
    for arch, official in CLASSIFIERS.items():
        model = models[f'vmamba-{arch}_8xb128_in1k']
        assert model['Metadata']['Parameters'] == official.params
        assert model['Metadata']['FLOPs'] == round(OFFICIAL_GFLOPS[arch] * 1e9)
        assert model['Results'][0]['Metrics']['Top 1 Accuracy'] == OFFICIAL_TOP1[arch]
    for arch, (base_arch, _) in VMAMBA_2D.items():
        size = arch.split('-')[1]
        assert models[f'vmamba2d-{size}_8xb128_in1k']['Metadata']['Parameters'] == \
            CLASSIFIERS[base_arch].params
    for config, official in DOWNSTREAM.items():
        name = osp.basename(config)
        model = models[name]
        assert model['Metadata']['Parameters'] == official.params
        metrics = {k: v for r in model['Results'] for k, v in r['Metrics'].items()}
        assert tuple(metrics.values()) == OFFICIAL_DENSE[name]


def test_list_models_finds_the_classifiers_only():
    import mmpretrain

    import vmamba_mm  # noqa: F401
    expected = _shipped_configs('vmamba/*.py') + _shipped_configs('vmamba2d/vmamba2d-*.py')
    assert len(expected) == 11
    assert mmpretrain.list_models('*vmamba*') == expected
    assert mmpretrain.list_models('*vmamba*', task='Image Classification') == expected
    assert mmpretrain.ImageClassificationInferencer.list_models('vmamba2d') == expected[-2:]
    # registering again (a reload) is a no-op, not mmpretrain's name-conflict error
    from vmamba_mm.apis.model_index import register_with_mmpretrain
    assert register_with_mmpretrain() == []


def test_unknown_names_list_close_ones():
    from vmamba_mm.apis.model_index import UnknownModelError, find_model
    with pytest.raises(UnknownModelError, match=r"'vmamba-tiny-s1l8'.*vmamba-tiny-s1l8_8xb128"):
        find_model('vmamba-tiny-s1l8')
    entry = find_model('upernet_vmamba-tiny-s1l8_8xb2-160k_ade20k-512x512')
    assert entry.scope == 'mmseg' and osp.isfile(entry.config)
    assert find_model('mask-rcnn_vmamba-base-s2l15_fpn_1x_coco').scope == 'mmdet'


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """Random VMamba-T weights (a seed of its own) in a converted-file layout."""
    import mmpretrain
    torch.manual_seed(3)
    model = mmpretrain.get_model(TINY)
    for parameter in model.parameters():  # not the init the next build would give
        torch.nn.init.normal_(parameter, std=0.05)
    folder = tmp_path_factory.mktemp('converted')
    path = folder / 'vmamba-tiny-s1l8_in1k.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def _assert_weights_equal(model, path):
    weights = torch.load(path, weights_only=True)['state_dict']
    state = model.state_dict()
    assert sorted(state) == sorted(weights)
    for key, value in weights.items():
        assert torch.equal(state[key], value), key


def test_get_model_by_name_loads_the_file(tiny_checkpoint, monkeypatch, tmp_path):
    import mmpretrain
    _assert_weights_equal(mmpretrain.get_model(TINY, pretrained=str(tiny_checkpoint)),
                          tiny_checkpoint)
    # pretrained=True: the metafile's vmamba-mm:// file, in $VMAMBA_MM_CHECKPOINTS
    monkeypatch.setenv('VMAMBA_MM_CHECKPOINTS', str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        mmpretrain.get_model(TINY, pretrained=True)
    message = str(error.value)
    assert str(tmp_path / 'vmamba-tiny-s1l8_in1k.pth') in message
    assert 'releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth' in message
    assert 'vmamba2mm.py vssm1_tiny_0230s_ckpt_epoch_264.pth' in message
    monkeypatch.setenv('VMAMBA_MM_CHECKPOINTS', str(tiny_checkpoint.parent))
    _assert_weights_equal(mmpretrain.get_model(TINY, pretrained=True), tiny_checkpoint)


def test_inference_by_name(tiny_checkpoint, tmp_path):
    import mmpretrain
    from mmengine.dataset import Compose, default_collate
    from mmpretrain.registry import TRANSFORMS
    image = tmp_path / 'image.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 300, 3), np.uint8)).save(
        image)
    # inference_model picks the inferencer by the metafile's task and builds
    # ImageClassificationInferencer(TINY, pretrained=...) by name
    found = mmpretrain.inference_model(TINY, str(image), pretrained=str(tiny_checkpoint),
                                       device='cpu')
    # the oracle: the loaded model's own test_step on the config's test pipeline
    model = mmpretrain.get_model(TINY, pretrained=str(tiny_checkpoint))
    pipeline = Compose([TRANSFORMS.build(step)
                        for step in model._config.test_dataloader.dataset.pipeline])
    with torch.no_grad():
        scores = model.test_step(default_collate([pipeline(dict(img_path=str(image)))]))[0]
    scores = scores.pred_score
    assert scores.shape == (1000, )
    np.testing.assert_allclose(found['pred_scores'], scores.numpy(), rtol=1e-5, atol=1e-7)
    assert found['pred_label'] == int(scores.argmax())
    assert found['pred_class']  # an ImageNet class name, from the config's dataset


def test_readme_tables_are_the_rendered_metafiles():
    result = subprocess.run([sys.executable, 'tools/misc/model_tables.py', '--check',
                             'README.md'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_renderer_replaces_only_its_blocks(tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'misc'))
    try:
        import model_tables
    finally:
        sys.path.pop(0)
    tables = model_tables.render_tables(osp.join(ROOT, 'model-index.yml'))
    text = ('intro\n<!-- model-table:classification -->\nold\n<!-- /model-table:classification -->'
            '\nmiddle\n<!-- model-table:detection-segmentation -->\n'
            '<!-- /model-table:detection-segmentation -->\nend\n')
    updated = model_tables.replace_blocks(text, tables)
    assert updated.startswith('intro\n') and '\nmiddle\n' in updated and updated.endswith('end\n')
    assert 'old' not in updated
    assert updated.count('| `') == 11 + 13  # one row per model
    assert '| `vmamba-tiny-s1l8_8xb128_in1k` | [config](configs/vmamba/' in updated
    assert '| 30,249,064 | 4.906 | 82.6 |' in updated
    assert model_tables.replace_blocks(updated, tables) == updated
    readme = tmp_path / 'README.md'
    readme.write_text('no markers\n')
    assert model_tables.main(['--check', str(readme)]) == 2
