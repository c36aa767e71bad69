"""demo/image_demo.py on the three demo configs with small models, on the CPU.

Each checkpoint is saved from a model built from the demo config (random weights, fixed seed).
The oracle of every prediction is the model itself: built again from the config, loaded from the
same file, run through the config's own test pipeline with ``test_step``, nothing of the
inferencers in between.
"""
import copy
import importlib
import importlib.util
import json
import shutil
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from tests.paths import DEMO_CLASSIFICATION, DEMO_DETECTION, DEMO_SEGMENTATION, ROOT

CLASSES = {
    'cls': ('circle', 'square', 'stripes', 'triangle'),
    'det': ('circle', 'square', 'triangle'),
    'seg': ('background', 'circle', 'square', 'triangle'),
}
CONFIGS = {'cls': DEMO_CLASSIFICATION, 'det': DEMO_DETECTION, 'seg': DEMO_SEGMENTATION}
IMAGE_SIZES = ((96, 128), (80, 80))  # (height, width): a wide image and a square one


def _load_demo():
    spec = importlib.util.spec_from_file_location('image_demo',
                                                  osp.join(ROOT, 'demo', 'image_demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo():
    return _load_demo()


def _build(config_path):
    """The config's model with its scope's registry, in eval mode."""
    import vmamba_mm  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config_path)
    init_default_scope(cfg.default_scope)
    # as mmengine's Runner does: a top-level data_preprocessor is the model's
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    return cfg, registry.MODELS.build(cfg.model).eval()


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Two images of shapes on a noisy background (what the demo data looks like)."""
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(IMAGE_SIZES):
        pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        pixels[10:40, 20:50] = (230, 25, 75)
        Image.fromarray(pixels).save(folder / f'shapes{i}.png')
    (folder / 'notes.txt').write_text('not an image: the demo skips it')
    return folder


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('checkpoints')
    paths = {}
    for task, config in CONFIGS.items():
        torch.manual_seed(1)
        cfg, model = _build(config)
        meta = {'classes': CLASSES[task]}
        if task == 'seg':
            meta['palette'] = cfg.metainfo['palette']
        paths[task] = folder / f'{task}.pth'
        torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': meta}},
                   paths[task])
    return paths


def _own_prediction(task, config_path, checkpoint, image_path):
    """The model's own test_step on the config's test pipeline (annotation loading removed)."""
    from mmengine.dataset import Compose, pseudo_collate
    cfg, model = _build(config_path)
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    model.load_state_dict(state, strict=True)
    pipeline = [step for step in copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
                if step['type'] != 'LoadAnnotations']
    data = Compose(pipeline)(dict(img_path=str(image_path), img_id=0))
    with torch.no_grad():
        return model.test_step(pseudo_collate([data]))[0]


def _run(demo, capsys, *argv):
    code = demo.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_predictions_equal_the_models_own(demo, capsys, images, checkpoints, tmp_path, task):
    out = tmp_path / 'out'
    code, stdout, stderr = _run(demo, capsys, images, CONFIGS[task], checkpoints[task],
                                '--device', 'cpu', '--out-dir', out, '--topk', 3)
    assert code == 0, stderr[-3000:]
    for i, (height, width) in enumerate(IMAGE_SIZES):
        image = images / f'shapes{i}.png'
        with open(out / 'preds' / f'shapes{i}.json', encoding='utf-8') as f:
            record = json.load(f)
        assert record['image'] == str(image)
        drawn = Image.open(record['visualization'])  # the drawn picture is a whole image
        assert drawn.size[0] > 0 and drawn.size[1] > 0
        assert str(image) in stdout
        own = _own_prediction(task, CONFIGS[task], checkpoints[task], image)
        if task == 'cls':
            scores, labels = own.pred_score.topk(3)
            assert [entry['label'] for entry in record['topk']] == labels.tolist()
            np.testing.assert_allclose([entry['score'] for entry in record['topk']],
                                       scores.numpy(), rtol=1e-5, atol=1e-6)
            assert [entry['class'] for entry in record['topk']] == [
                CLASSES['cls'][label] for label in labels.tolist()]
        elif task == 'det':
            from pycocotools import mask as coco_mask
            instances = own.pred_instances
            assert len(record['labels']) == len(instances) > 0
            assert record['labels'] == instances.labels.tolist()
            assert record['classes'] == [CLASSES['det'][label] for label in record['labels']]
            np.testing.assert_allclose(record['scores'], instances.scores.numpy(), rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(record['bboxes'], instances.bboxes.numpy(), rtol=1e-4,
                                       atol=1e-3)
            decoded = np.stack([coco_mask.decode(rle) for rle in record['masks']])
            assert decoded.shape == (len(instances), height, width)
            assert (decoded.astype(bool) == instances.masks.numpy()).all()
        else:
            label_map = own.pred_sem_seg.data[0].numpy()
            saved = np.array(Image.open(record['seg_map']))
            assert saved.shape == (height, width) == (record['height'], record['width'])
            assert (saved == label_map).all()
            labels, counts = np.unique(label_map, return_counts=True)
            assert record['pixels_per_class'] == {
                CLASSES['seg'][label]: int(count) for label, count in zip(labels, counts)}


def test_bad_inputs_are_named(demo, capsys, images, checkpoints, tmp_path):
    out = ['--device', 'cpu', '--out-dir', tmp_path / 'out']
    code, _, err = _run(demo, capsys, tmp_path / 'missing.png', DEMO_CLASSIFICATION,
                        checkpoints['cls'], *out)
    assert code == 2 and 'image or folder not found' in err and 'missing.png' in err
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, _, err = _run(demo, capsys, empty, DEMO_CLASSIFICATION, checkpoints['cls'], *out)
    assert code == 2 and 'no images' in err and str(empty) in err
    code, _, err = _run(demo, capsys, images, tmp_path / 'nope.py', checkpoints['cls'], *out)
    assert code == 2 and 'config file not found' in err and 'nope.py' in err
    code, _, err = _run(demo, capsys, images, DEMO_CLASSIFICATION, tmp_path / 'no.pth', *out)
    assert code == 2 and 'no.pth' in err and 'does not exist' in err
    text = tmp_path / 'text.pth'
    text.write_text('not a checkpoint')
    code, _, err = _run(demo, capsys, images, DEMO_CLASSIFICATION, text, *out)
    assert code == 2 and 'text.pth' in err and 'not a whole torch checkpoint' in err
    # a classifier's weights given to the detector, and the reverse: neither predicts
    code, _, err = _run(demo, capsys, images, DEMO_DETECTION, checkpoints['cls'], *out)
    assert code == 2 and 'does not fit the model' in err and 'missing keys' in err
    code, _, err = _run(demo, capsys, images, DEMO_CLASSIFICATION, checkpoints['seg'], *out)
    assert code == 2 and 'does not fit the model' in err
    assert not (tmp_path / 'out' / 'preds').exists()


def test_model_names(demo, capsys, images, tmp_path, monkeypatch):
    monkeypatch.setenv('VMAMBA_MM_CHECKPOINTS', str(tmp_path))
    code, _, err = _run(demo, capsys, images, 'mask-rcnn_vmamba-tiny-s1l8_fpn_1x', '--out-dir',
                        tmp_path / 'out')
    assert code == 2 and "unknown model name 'mask-rcnn_vmamba-tiny-s1l8_fpn_1x'" in err
    assert 'mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco' in err  # the close names are listed
    # a detector by name without its converted file: the release and the command are named
    code, _, err = _run(demo, capsys, images, 'mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco',
                        '--out-dir', tmp_path / 'out')
    assert code == 2
    assert str(tmp_path / 'mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco.pth') in err
    assert 'mask_rcnn_vssm_fpn_coco_tiny_s_epoch_12.pth' in err and 'vmamba2mm.py' in err
    # a config needs a checkpoint
    code, _, err = _run(demo, capsys, images, DEMO_CLASSIFICATION, '--out-dir', tmp_path)
    assert code == 2 and 'needs a CHECKPOINT' in err


@pytest.fixture(scope='module')
def unreadable(tmp_path_factory, images):
    """A folder of the two good images, one whose bytes do not decode and one of 0 bytes."""
    folder = tmp_path_factory.mktemp('some_unreadable')
    for i in range(len(IMAGE_SIZES)):
        shutil.copy(images / f'shapes{i}.png', folder / f'shapes{i}.png')
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    (folder / 'empty.jpg').write_bytes(b'')
    return folder


def test_unreadable_images_are_skipped_and_reported(demo, capsys, unreadable, checkpoints,
                                                    tmp_path):
    broken, empty = unreadable / 'broken.png', unreadable / 'empty.jpg'
    out = tmp_path / 'out'
    code, stdout, err = _run(demo, capsys, unreadable, DEMO_CLASSIFICATION, checkpoints['cls'],
                             '--device', 'cpu', '--out-dir', out)
    assert code == 1, err[-3000:]
    assert sorted(p.name for p in (out / 'preds').iterdir()) == ['shapes0.json', 'shapes1.json']
    assert f'skipped: image {broken} does not decode as an image' in err
    assert f'skipped: image {empty} is empty (0 bytes)' in err
    assert err.strip().splitlines()[-1].startswith(
        f"skipped 2 of the 4 images, which cannot be read: ['{broken}', '{empty}']; the other 2 "
        f'were predicted.')
    # --stop-on-error: the first unreadable image stops the demo before any prediction.
    out = tmp_path / 'stopped'
    code, stdout, err = _run(demo, capsys, unreadable, DEMO_CLASSIFICATION, checkpoints['cls'],
                             '--device', 'cpu', '--out-dir', out, '--stop-on-error')
    assert code == 2 and err.strip().splitlines() == [
        f'error: image {broken} does not decode as an image; replace or remove it (without '
        f'--stop-on-error the others are predicted and it is skipped)']
    assert not out.exists() and stdout == ''
    # One unreadable image given alone is the whole input: an error, whatever the flag.
    code, _, err = _run(demo, capsys, empty, DEMO_CLASSIFICATION, checkpoints['cls'], '--out-dir',
                        out)
    assert code == 2 and err.strip().splitlines() == [
        f'error: image {empty} is empty (0 bytes); replace or remove it']


def test_bad_devices_and_output_folders_are_named_before_the_model(demo, capsys, images,
                                                                   checkpoints, tmp_path):
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    import torch
    cases = [
        (['--device', 'gpu0'], "error: --device 'gpu0' is not a device; give cpu, cuda or cuda:N"),
        (['--out-dir', a_file / 'out'],
         f'error: --out-dir {a_file / "out"}: {a_file} is a file, not a folder; choose another '
         f'path.'),
        (['--out-dir', '/proc/demo'], 'error: --out-dir /proc/demo: cannot create files under '
                                      '/proc (No such file or directory); choose a writable path.'),
    ]
    if not torch.cuda.is_available():
        cases.append((['--device', 'cuda:1'], 'error: --device cuda:1: CUDA is not available on '
                                              'this machine; use --device cpu'))
    for flags, message in cases:
        code, stdout, err = _run(demo, capsys, images, DEMO_CLASSIFICATION, checkpoints['cls'],
                                 *flags)
        assert code == 2 and err.strip().splitlines() == [message] and stdout == ''


# -- fuzzed arguments: every combination ends in 0, 1 or one `error:` line, never a traceback


@pytest.fixture(scope='module')
def fuzz_paths(tmp_path_factory, images, unreadable, checkpoints):
    folder = tmp_path_factory.mktemp('fuzz')
    a_file = folder / 'a_file'
    a_file.write_text('not a folder, not an image, not a checkpoint')
    (folder / 'empty_dir').mkdir()
    return {
        'inputs': [images, unreadable, unreadable / 'broken.png', folder / 'empty_dir',
                   folder / 'missing.png', a_file],
        'model': [DEMO_CLASSIFICATION, folder / 'missing.py', 'no-such-model', a_file],
        'checkpoint': [checkpoints['cls'], checkpoints['det'], folder / 'missing.pth', a_file],
        'out_dir': [folder / 'out', a_file / 'out', '/proc/out'],
    }


def _demo_argv(draw, paths):
    from hypothesis import strategies as st
    argv = [draw(st.sampled_from(paths['inputs'])), draw(st.sampled_from(paths['model']))]
    if draw(st.booleans()):
        argv.append(draw(st.sampled_from(paths['checkpoint'])))
    text = st.text('abcuda:0-1.e ', max_size=6)
    flags = {
        '--device': st.sampled_from(['cpu', 'cuda', 'cuda:3', 'cpu:0', 'gpu', '', 'meta']) | text,
        '--out-dir': st.sampled_from(paths['out_dir']),
        '--topk': st.integers(-2, 30).map(str) | text,
        '--score-thr': st.sampled_from(['nan', 'inf', '-0.5', '0', '1', '1.5']) | text,
    }
    for flag in draw(st.lists(st.sampled_from(sorted(flags)), unique=True)):
        argv += [flag, draw(flags[flag])]
    if draw(st.booleans()):
        argv.append('--stop-on-error')
    if '--out-dir' not in argv:
        argv += ['--out-dir', paths['out_dir'][0]]
    return [str(arg) for arg in argv]


def test_fuzzed_arguments_end_in_a_status_or_one_error_line(demo, capsys, fuzz_paths):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(derandomize=True, database=None, deadline=None, max_examples=40,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        argv = _demo_argv(data.draw, fuzz_paths)
        try:
            code = demo.main(argv)
        except SystemExit as exc:  # argparse: usage and one error line, status 2
            err = capsys.readouterr().err.strip().splitlines()
            assert exc.code == 2 and ': error: ' in err[-1], (argv, err)
            return
        err = capsys.readouterr().err.strip().splitlines()
        assert code in (0, 1, 2), argv
        if code == 2:
            errors = [line for line in err if line.startswith('error: ')]
            assert len(errors) == 1 and err[-1] == errors[0], (argv, err)

    run()
