"""tools/deployment/pytorch2onnx.py and vmamba_mm.deployment.onnx on small models.

Each export is checked twice: by the tool's own --verify, and here, independently: the test
builds the same model from the same weights with the CPU's default scan kernel (the C++ one when
built, not the tensor-op scan that goes into the graph) and compares onnxruntime's outputs with
it on inputs of its own.
"""
import importlib.util
import os
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.paths import (DEMO_CLASSIFICATION, DEMO_CLASSIFICATION_2D, DEMO_DETECTION,
                         DEMO_SEGMENTATION, ROOT)

TOOL = os.path.join(ROOT, 'tools', 'deployment', 'pytorch2onnx.py')


def run_tool(capsys, *args):
    """The tool's main() in this process (its imports are paid once for the whole file):
    (exit code, stdout, stderr); argparse's usage errors exit with code 2 as on the command
    line."""
    spec = importlib.util.spec_from_file_location('pytorch2onnx', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    capsys.readouterr()
    try:
        code = tool.main([str(arg) for arg in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err

# The demos' small VSSM cut to two one-block stages of 8 and 16 channels: the graph has every
# kind of layer the released models have, and exports in seconds.
TINY_CLASSIFIER = f"""
_base_ = [{DEMO_CLASSIFICATION!r}]
model = dict(backbone=dict(arch=dict(depths=[1, 1], dims=8), out_indices=(1, )),
             head=dict(in_channels=16))
"""
TINY_SEGMENTOR = f"""
_base_ = [{DEMO_SEGMENTATION!r}]
model = dict(backbone=dict(arch=dict(depths=[1, 1], dims=8), out_indices=(0, 1)),
             decode_head=dict(in_channels=[8, 16], in_index=[0, 1], channels=8,
                              pool_scales=(1, 2)),
             auxiliary_head=dict(in_channels=16, in_index=1, channels=8))
"""
TINY_DETECTOR = f"""
_base_ = [{DEMO_DETECTION!r}]
model = dict(backbone=dict(arch=dict(depths=[1, 1], dims=8), out_indices=(0, 1)),
             neck=dict(in_channels=[8, 16], out_channels=8, num_outs=3),
             rpn_head=dict(in_channels=8, feat_channels=8,
                           anchor_generator=dict(strides=[4, 8, 16])))
"""


def write(path, text):
    path.write_text(text)
    return str(path)


def build(config_path, seed):
    """The config's model in eval mode with seeded random weights and its default scan."""
    import vmamba_mm  # noqa: F401
    cfg = Config.fromfile(config_path)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS'])
    torch.manual_seed(seed)
    model = registry.MODELS.build(cfg.model)
    for param in model.parameters():  # a spread of weights, not the init's near-identities
        param.data.add_(torch.randn_like(param) * 0.02)
    return model.eval()


def save_weights(model, path):
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


def run_onnx(path, images):
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})


def assert_close_to_scale(got, expected):
    expected = expected.detach().numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_dynamic_classifier_serves_other_sizes_and_matches_pytorch(tmp_path, capsys):
    """Exported at 32x24, where the second stage's 4x3 map fits one 16-token scan chunk: the
    file once ran at that size only (torch.export baked the one-chunk shapes in)."""
    config = write(tmp_path / 'tiny_cls.py', TINY_CLASSIFIER)
    model = build(config, seed=1)
    checkpoint = save_weights(model, tmp_path / 'tiny_cls.pth')
    out = str(tmp_path / 'cls.onnx')
    code, stdout, stderr = run_tool(capsys, config, '--checkpoint', checkpoint, '--shape', 32, 24,
                                    '--dynamic-shape', '--verify', '--output-file', out)
    assert code == 0, stdout[-2000:] + stderr[-3000:]
    assert "scan_backend -> 'torch'" in stdout
    # The claim: stage 2 (stride 8) must be at least 2x2, so sides of 9 and more.
    assert 'for any H x W with both sides >= 9, batch 1' in stdout, stdout
    checked = re.findall(r'verify: batch 1, (\d+)x(\d+): .* = ([\d.e+-]+), top-1 same', stdout)
    sizes = [(int(h), int(w)) for h, w, _ in checked]
    assert len(sizes) == 4 and sizes[0] == (32, 24), stdout
    assert any(h % 2 or w % 2 for h, w in sizes) and (9, 14) in sizes, sizes
    assert any(h > 32 and w > 24 and h != w for h, w in sizes), sizes
    assert all(float(err) <= 1e-4 for *_, err in checked)
    # Independently: sizes the tool did not try, from the smallest claimed to several chunks per
    # stage, odd and non-square.
    for shape in [(1, 3, 9, 9), (1, 3, 9, 31), (1, 3, 37, 53), (1, 3, 64, 64), (1, 3, 97, 45)]:
        images = torch.randn(shape)
        with torch.no_grad():
            expected = model(images, mode='tensor')
        (logits, ) = run_onnx(out, images)
        assert_close_to_scale(logits, expected)
        assert (logits.argmax(-1) == expected.numpy().argmax(-1)).all()


def test_segmentor_and_detector_features_export_and_match(tmp_path, capsys):
    for name, text, seed in (('seg', TINY_SEGMENTOR, 2), ('det', TINY_DETECTOR, 3)):
        config = write(tmp_path / f'tiny_{name}.py', text)
        model = build(config, seed)
        checkpoint = save_weights(model, tmp_path / f'{name}.pth')
        out = str(tmp_path / f'{name}.onnx')
        code, stdout, stderr = run_tool(capsys, config, '--checkpoint', checkpoint, '--shape',
                                        64, 48, '--verify', '--output-file', out)
        assert code == 0, stderr[-3000:]
        assert 'verify: batch 1, 64x48' in stdout
        images = torch.randn(1, 3, 64, 48)
        with torch.no_grad():
            expected = (model(images, mode='tensor'), ) if name == 'seg' else \
                model.extract_feat(images)
        got = run_onnx(out, images)
        assert len(got) == len(expected) == (1 if name == 'seg' else 3)
        for g, e in zip(got, expected):
            assert_close_to_scale(g, e)


def test_verify_fails_on_a_real_mismatch(tmp_path):
    """The ONNX file of one set of weights against a model with other weights."""
    from vmamba_mm.deployment import onnx as deploy
    config = write(tmp_path / 'tiny_cls.py', TINY_CLASSIFIER)
    exported = deploy.build_export_model(config, save_weights(build(config, 4),
                                                              tmp_path / 'a.pth'))
    other = deploy.build_export_model(config, save_weights(build(config, 5), tmp_path / 'b.pth'))
    path = str(tmp_path / 'a.onnx')
    deploy.export_onnx(exported.module, (40, 40), path)
    session = deploy.OnnxRuntimeSession(path)
    lines = []
    assert deploy.verify(exported.module, session, [(1, 40, 40)], True, lines.append)[0].ok
    with pytest.raises(deploy.VerificationError, match=r'batch 1, 40x40: .*tolerance'):
        deploy.verify(other.module, session, [(1, 40, 40)], True, lines.append)
    # A size the fixed-shape file cannot take is a failure naming the size, not a crash.
    with pytest.raises(deploy.VerificationError, match=r'batch 1, 48x40: onnxruntime failed'):
        deploy.verify(exported.module, session, [(1, 48, 40)], True, lines.append)


@pytest.mark.parametrize('args, message', [
    (['missing_config.py', '--shape', '32', '32'], 'config file not found: missing_config.py'),
    ([DEMO_CLASSIFICATION, '--shape', '0', '32'], '--shape must be two positive sizes'),
    ([DEMO_CLASSIFICATION, '--shape', '32'], 'argument --shape: expected 2 arguments'),
    ([DEMO_CLASSIFICATION, '--shape', '2', '2'], 'smaller than the 4x4'),
    ([DEMO_CLASSIFICATION, '--shape', '32', '32', '--checkpoint', 'nope.pth'],
     '--checkpoint nope.pth: file not found'),
    ([DEMO_CLASSIFICATION, '--shape', '32', '32', '--threads', '0'], '--threads must be >= 1'),
    # Refused before tracing: the 2D scan's route grouping cannot take symbolic sizes.
    ([DEMO_CLASSIFICATION_2D, '--shape', '32', '32', '--dynamic-shape'],
     'this model scans 2D grids (scan_2d=True), which export at a fixed size only'),
])
def test_bad_input_is_named(tmp_path, capsys, args, message):
    code, stdout, stderr = run_tool(capsys, *args, '--output-file', tmp_path / 'x.onnx')
    assert code == 2, stdout + stderr
    assert 'error:' in stderr and message in stderr, stderr[-2000:]
    assert not (tmp_path / 'x.onnx').exists()



def test_unwritable_output_file_is_named_before_any_work(tmp_path, capsys):
    """Under /proc, under a regular file, or a folder: one error line naming the path, before the
    model is built (no 'model:' line) and without creating anything."""
    regular = tmp_path / 'weights.pth'
    regular.write_text('not a folder')
    cases = [('/proc/vmamba.onnx', 'cannot create files under /proc'),
             ('/proc/exports/vmamba.onnx', 'cannot create files under /proc'),
             (f'{regular}/vmamba.onnx', f'{regular} is a file, not a folder'),
             (f'{regular}/sub/vmamba.onnx', f'{regular} is a file, not a folder'),
             (f'{tmp_path}/folder.onnx', 'is a folder')]
    (tmp_path / 'folder.onnx').mkdir()
    for output, message in cases:
        code, stdout, stderr = run_tool(capsys, DEMO_CLASSIFICATION, '--shape', 32, 32,
                                        '--output-file', output)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (output, stderr)
        assert lines[0].startswith(f'error: --output-file {output}') and message in lines[0], \
            lines[0]
        assert 'model:' not in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ['folder.onnx', 'weights.pth']


# -- fuzzed arguments ----------------------------------------------------------------------------

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
numbers = st.integers(-3, 40).map(str) | st.sampled_from(['', 'x', '1.5', '-0', '1e3', '9' * 30])


@st.composite
def tool_arguments(draw, folder):
    """An argv with at least one argument the tool must refuse before exporting (so that no
    example costs an export), the rest valid or not, in any order."""
    regular = folder / 'regular.pth'
    bad = [['--shape', draw(st.sampled_from(['0', '-1', 'x'])), draw(numbers)],
           ['--shape', draw(numbers)],
           ['--batch-size', draw(st.sampled_from(['0', '-2', 'b']))],
           ['--opset', draw(st.sampled_from(['1', '17', 'x']))],
           ['--threads', draw(st.sampled_from(['0', '-1', '1.5']))],
           ['--output-file', draw(st.sampled_from(['out.onnxx', 'out', '/proc/out.onnx',
                                                  f'{regular}/out.onnx', str(folder)]))],
           ['--checkpoint', draw(st.sampled_from(['nope.pth', str(folder), str(regular)]))],
           ['--cfg-options', draw(st.sampled_from(['model.backbone.arch.depths=-1', 'model=',
                                                   'model.backbone.arch.dims=[0]']))],
           [draw(st.sampled_from(['--unknown', '-x', '--shape=1']))]]
    good = [['--shape', '32', '32'], ['--dynamic-shape'], ['--dynamic-batch'], ['--verify'],
            ['--batch-size', '2'], ['--opset', '18'], ['--threads', '1'],
            ['--output-file', str(folder / 'out.onnx')]]
    picked = draw(st.lists(st.sampled_from(bad), min_size=1, max_size=3)) + \
        draw(st.lists(st.sampled_from(good), max_size=4))
    order = draw(st.permutations(picked))
    config = draw(st.sampled_from([DEMO_CLASSIFICATION, 'missing.py', str(regular),
                                   str(folder)]))
    return [config] + [token for group in order for token in group]


def test_fuzzed_arguments_exit_2_with_a_named_error(tmp_path, capsys):
    (tmp_path / 'regular.pth').write_text('not a checkpoint')

    @FUZZ
    @given(argv=tool_arguments(tmp_path))
    def check(argv):
        code, stdout, stderr = run_tool(capsys, *argv)
        errors = [line for line in stderr.splitlines() if 'error:' in line]
        assert code == 2 and len(errors) == 1 and 'Traceback' not in stderr, (argv, stderr)
        # The line names what is wrong: one of the arguments given, or the one missing.
        named = {token.split('=')[0] for token in argv} | {'--shape', '--output-file'}
        assert any(name in errors[0] for name in named if name), (argv, errors[0])
        assert not (tmp_path / 'out.onnx').exists()

    check()
