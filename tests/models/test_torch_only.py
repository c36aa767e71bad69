"""The model core where only torch is installed: no mmengine, mmcv, mmpretrain, mmdet or mmseg.

A fresh interpreter runs with ``-S -I`` (no site-packages, no environment) on a path of links to
every entry of this venv's site-packages except the OpenMMLab packages, plus the two packages of
this repository. It really cannot import the mm packages; it checks that itself first.
"""
import os
import os.path as osp
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch

from tests.paths import ROOT

MM_PACKAGES = ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'mmsegmentation')
# The same input and arch on both sides; 'torch' is the scan backend that needs no compiled
# extension, so the child's logits match the parent's and nothing is built here.
ARCH, NUM_CLASSES, BACKEND, SIZE = 'tiny-s1l8', 10, 'torch', 64


def _torch_only_path(folder):
    """A folder of links: site-packages without the mm packages, and this repository's
    packages (vmamba_kernels is the kernels/ folder, as setup.cfg's package_dir maps it)."""
    site_packages = sysconfig.get_paths()['purelib']
    for name in os.listdir(site_packages):
        if name.lower().startswith(MM_PACKAGES) or name.startswith('__editable__') \
                or name == 'tests':  # model-index installs a top-level `tests` package
            continue
        os.symlink(osp.join(site_packages, name), folder / name)
    os.symlink(osp.join(ROOT, 'vmamba_mm'), folder / 'vmamba_mm')
    os.symlink(osp.join(ROOT, 'kernels'), folder / 'vmamba_kernels')
    return str(folder)


def _runner_checkpoint(path, model):
    """What mmengine's Runner.save_checkpoint writes: meta with numpy values, the weights, a
    message hub of HistoryBuffers (pickled with getattr(HistoryBuffer, 'min') ...), the
    optimizer state."""
    np = pytest.importorskip('numpy')
    logging_module = pytest.importorskip('mmengine.logging')
    hub = logging_module.MessageHub.get_instance('vmamba_mm_test_torch_only')
    hub.update_scalar('train/loss', 2.5)
    hub.update_scalar('train/lr', np.float64(1e-3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.save(dict(meta=dict(epoch=1, iter=8, seed=np.int64(0), mmengine_version='0.10.7'),
                    state_dict=model.state_dict(), message_hub=hub.state_dict(),
                    optimizer=optimizer.state_dict()), path)


CHILD = textwrap.dedent('''
    import importlib.util
    import sys

    sys.path.insert(0, {path!r})
    missing = [name for name in {mm!r} if importlib.util.find_spec(name) is not None]
    assert not missing, f'mm packages importable: {{missing}}'

    import torch
    import vmamba_kernels  # noqa: F401
    import vmamba_mm

    for name in {mm!r}:
        assert name not in sys.modules, f'{{name}} was imported'
    torch.manual_seed(0)
    x = torch.load({expected!r}, weights_only=True)['input']
    model = vmamba_mm.create_model({arch!r}, num_classes={classes}, scan_backend={backend!r})
    model.eval()
    logits = model(x)
    assert logits.shape == (1, {classes}), logits.shape

    features = vmamba_mm.create_model({arch!r}, features_only=True, scan_backend={backend!r})
    maps = features(x)
    shapes = [tuple(m.shape) for m in maps]
    assert shapes == [(1, c, {size} // s, {size} // s) for c, s in
                      zip(features.feature_info.channels(), features.feature_info.reduction())]
    assert features.feature_info.reduction() == [4, 8, 16, 32], features.feature_info

    # a checkpoint written by this process loads back to the same logits
    torch.save({{'state_dict': model.state_dict()}}, {own!r})
    again = vmamba_mm.create_model({arch!r}, pretrained={own!r}, num_classes={classes},
                                   scan_backend={backend!r}).eval()
    torch.testing.assert_close(again(x), logits, rtol=0, atol=0)

    # a runner checkpoint written where mmengine is installed
    trained = vmamba_mm.create_model({arch!r}, pretrained={runner!r}, num_classes={classes},
                                     scan_backend={backend!r}).eval()
    expected = torch.load({expected!r}, weights_only=True)['logits']
    torch.testing.assert_close(trained(x), expected, rtol=1e-5, atol=1e-5)
    # an mmengine initialiser cannot run here, and the error says why
    backbone = vmamba_mm.VSSM({arch!r}, init_cfg=dict(type='Kaiming', layer='Conv2d'))
    try:
        backbone.init_weights()
    except RuntimeError as error:
        assert 'mmengine is not installed' in str(error) and 'Kaiming' in str(error), error
    else:
        raise AssertionError('init_cfg Kaiming ran without mmengine')
    for name in {mm!r}:
        assert name not in sys.modules, f'{{name}} was imported'
    print('torch-only ok')
''')


def test_model_core_without_the_openmmlab_packages(tmp_path):
    import vmamba_mm
    source = vmamba_mm.create_model(ARCH, num_classes=NUM_CLASSES, scan_backend=BACKEND).eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(x)
    torch.save({'input': x, 'logits': expected}, tmp_path / 'expected.pt')
    _runner_checkpoint(tmp_path / 'epoch_1.pth', source)
    links = tmp_path / 'site'
    links.mkdir()
    code = CHILD.format(path=_torch_only_path(links), mm=MM_PACKAGES, arch=ARCH,
                        classes=NUM_CLASSES, backend=BACKEND, size=SIZE,
                        expected=str(tmp_path / 'expected.pt'), own=str(tmp_path / 'own.pth'),
                        runner=str(tmp_path / 'epoch_1.pth'))
    proc = subprocess.run([sys.executable, '-S', '-I', '-c', code], capture_output=True,
                          text=True, cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == 'torch-only ok'
