"""Reading official VMamba checkpoints safely and converting them to vmamba-mm keys."""
import argparse
import os
import pickle
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest
import torch

from vmamba_mm.checkpoint import (CheckpointContentError, CheckpointReadError,
                                  UnsafeCheckpointError, UntrustedObject,
                                  convert_official_state_dict, load_official_state_dict,
                                  safe_load)
from vmamba_mm.checkpoint.mmengine_loader import trusted_load

from tests.official import load_official_keys, random_official_state_dict
from tests.paths import CONVERTER as CLI
from tests.paths import IMAGENET_TINY, ROOT

FOREIGN_MODULE = 'yacs_like_cfg_for_tests'
_FOREIGN = {}


def _run_cli(*args):
    return subprocess.run([sys.executable, CLI, *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def _cli_in_process(*args):
    """Run the CLI's main() in this process (starting python + torch costs ~4 s a run)."""
    import contextlib
    import importlib.util
    import io
    spec = importlib.util.spec_from_file_location('vmamba2mm_cli', CLI)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = mod.main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module')
def foreign_cfg_class(tmp_path_factory):
    """A yacs-CfgNode-like class living in a throwaway module, so the unpickler sees a foreign
    class.  Its __setstate__/__init__ would leave a marker file if they ever ran at load."""
    d = tmp_path_factory.mktemp('foreign')
    marker = d / 'foreign_code_ran'
    (d / f'{FOREIGN_MODULE}.py').write_text(textwrap.dedent(f'''
        MARKER = {str(marker)!r}

        class CfgNode(dict):
            def __init__(self, init_dict=None):
                super().__init__(init_dict or {{}})
                self.__dict__['__immutable__'] = False

            def __setstate__(self, state):
                open(MARKER, 'w').write('setstate ran')
                self.__dict__.update(state)
    '''))
    sys.path.insert(0, str(d))
    try:
        mod = __import__(FOREIGN_MODULE)
    finally:
        sys.path.remove(str(d))
    _FOREIGN['module'] = mod
    yield mod.CfgNode, marker
    sys.modules.pop(FOREIGN_MODULE, None)


def _write_official(path, state_dict, cfg_cls, ema=True, legacy_zip=True):
    # pickle looks the class up by module name when saving; loading must do without it
    sys.modules[FOREIGN_MODULE] = _FOREIGN['module']
    cfg = cfg_cls({'MODEL': cfg_cls({'TYPE': 'vssm', 'NAME': 'vssm_tiny'}),
                   'TRAIN': cfg_cls({'EPOCHS': 300, 'BASE_LR': 5e-4})})
    ckpt = {
        'model': state_dict,
        'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-3, 'params': [0, 1]}]},
        'lr_scheduler': {'t_initial': 300},
        'max_accuracy': 82.6,
        'epoch': 299,
        'config': cfg,
        'args': argparse.Namespace(cfg='configs/vssm/vmambav2v_tiny_224.yaml', batch_size=128),
    }
    if ema:
        ckpt['model_ema'] = OrderedDict((k, v + 1.0) for k, v in state_dict.items())
    torch.save(ckpt, path, _use_new_zipfile_serialization=legacy_zip)


def _forget_foreign_module():
    sys.modules.pop(FOREIGN_MODULE, None)


@pytest.fixture(scope='module')
def official_files(tmp_path_factory, foreign_cfg_class):
    cfg_cls, marker = foreign_cfg_class
    d = tmp_path_factory.mktemp('official')
    files = {}
    for i, name in enumerate(['vmamba_tiny_s1l8', 'vanilla_vmamba_tiny']):
        sd = random_official_state_dict(name, seed=i)
        path = d / f'{name}.pth'
        _write_official(path, sd, cfg_cls)
        files[name] = (path, sd)
    _forget_foreign_module()
    return files


# ------------------------------------------------------------------------------- safe_load


def test_json_param_counts_match_reference():
    keys = load_official_keys()
    for name in ('vmamba_tiny_s1l8', 'vanilla_vmamba_tiny'):
        numel = sum(torch.Size(s).numel() for s in keys[name]['state_dict'].values())
        assert numel == keys[name]['params']


def test_safe_load_official_file_with_foreign_config(official_files, foreign_cfg_class):
    _, marker = foreign_cfg_class
    path, sd = official_files['vmamba_tiny_s1l8']
    _forget_foreign_module()
    # plain weights_only loading refuses these files: this is why safe_load exists
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(path, weights_only=True)
    ckpt = safe_load(path)
    assert FOREIGN_MODULE not in sys.modules, 'the foreign module must never be imported'
    assert not marker.exists(), 'code of the foreign class must never run'
    assert set(ckpt) >= {'model', 'model_ema', 'config', 'args', 'optimizer', 'epoch'}
    assert ckpt['epoch'] == 299 and ckpt['max_accuracy'] == 82.6
    for k, v in sd.items():
        assert torch.equal(ckpt['model'][k], v)
    cfg = ckpt['config']
    assert isinstance(cfg, UntrustedObject)
    assert cfg.global_name == f'{FOREIGN_MODULE}.CfgNode'
    assert cfg['MODEL']['TYPE'] == 'vssm' and cfg['TRAIN']['EPOCHS'] == 300
    assert cfg.state == {'__immutable__': False}
    args = ckpt['args']
    assert isinstance(args, UntrustedObject) and args.global_name == 'argparse.Namespace'
    assert args.state['batch_size'] == 128
    assert 'UntrustedObject(' in repr(cfg)


def test_safe_load_legacy_non_zip_format(tmp_path, foreign_cfg_class):
    cfg_cls, marker = foreign_cfg_class
    sd = OrderedDict(a=torch.randn(3, 4), b=torch.arange(5))
    path = tmp_path / 'legacy.pth'
    _write_official(path, sd, cfg_cls, legacy_zip=False)
    _forget_foreign_module()
    ckpt = safe_load(path)
    assert torch.equal(ckpt['model']['a'], sd['a']) and torch.equal(ckpt['model']['b'], sd['b'])
    assert ckpt['config']['MODEL']['NAME'] == 'vssm_tiny'
    assert not marker.exists() and FOREIGN_MODULE not in sys.modules


class _SystemCall:

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd, ))


class _EvalCall:

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code, ))


@pytest.mark.parametrize('legacy_zip', [True, False], ids=['zip', 'legacy'])
@pytest.mark.parametrize('kind', ['os.system', 'builtins.eval'])
def test_malicious_pickle_is_refused(tmp_path, kind, legacy_zip):
    marker = tmp_path / 'pwned'
    if kind == 'os.system':
        payload, global_name = _SystemCall(f'touch {marker}'), 'system'
    else:
        payload = _EvalCall(f"open({str(marker)!r}, 'w').write('x')")
        global_name = 'builtins.eval'
    path = tmp_path / 'evil.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'config': payload}, path,
               _use_new_zipfile_serialization=legacy_zip)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    msg = str(info.value)
    assert str(path) in msg and global_name in msg
    assert not marker.exists()
    # the CLI refuses it too, with the same message, and writes nothing
    out = tmp_path / 'out.pth'
    if kind == 'os.system' and legacy_zip:  # one real subprocess run; the others in-process
        proc = _run_cli(path, out)
        rc, stderr = proc.returncode, proc.stderr
    else:
        rc, _, stderr = _cli_in_process(path, out)
    assert rc != 0 and global_name in stderr and 'Traceback' not in stderr
    assert not out.exists() and not marker.exists()
    # with on_call='placeholder' the call is recorded, still not executed
    ckpt = safe_load(path, on_call='placeholder')
    assert isinstance(ckpt['config'], UntrustedObject) and ckpt['config'].called
    assert not marker.exists()


@pytest.mark.parametrize('protocol', [1, 2, 4])
def test_safe_load_pickle_protocols(tmp_path, protocol):
    obj = {'m': {'w': torch.arange(3.0)}, 'ns': argparse.Namespace(x=1),
           'od': OrderedDict(a=[1, 2])}
    path = tmp_path / f'p{protocol}.pth'
    torch.save(obj, path, pickle_protocol=protocol)
    out = safe_load(path)
    assert torch.equal(out['m']['w'], obj['m']['w']) and out['od'] == obj['od']
    assert out['ns'].global_name == 'argparse.Namespace' and out['ns'].state == {'x': 1}


def _replace_data_pkl(src, dst, payload):
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, payload if info.filename.endswith('data.pkl') else data)


def test_pickle_cannot_modify_allowed_classes(tmp_path):
    """BUILD on a global (here: setattr(torch.nn.Parameter, 'evil', 1)) is refused, as is
    setting attributes on the stand-in classes."""
    torch.save({'a': 1}, tmp_path / 'base.pth')
    payloads = {
        'Parameter': b'\x80\x02ctorch.nn.parameter\nParameter\nN}X\x04\x00\x00\x00evilK\x01s\x86b.',
        'stand-in': b'\x80\x02cposix\nsystem\nN}X\x08\x00\x00\x00_on_callX\x0b\x00\x00\x00'
                    b'placeholders\x86b.',
    }
    for name, payload in payloads.items():
        path = tmp_path / f'{name}.pth'
        _replace_data_pkl(tmp_path / 'base.pth', path, payload)
        with pytest.raises(UnsafeCheckpointError):
            safe_load(path)
    assert not hasattr(torch.nn.Parameter, 'evil')


def test_safe_load_keeps_numpy_and_containers(tmp_path):
    np = pytest.importorskip('numpy')
    obj = {'acc': np.float64(82.5), 'arr': np.arange(4, dtype=np.int32), 's': {1, 2},
           'od': OrderedDict(x=1), 't': (1, 'a', None), 'dtype': torch.float16,
           'dev': torch.device('cpu'), 'size': torch.Size([2, 3]),
           'p': torch.nn.Parameter(torch.ones(2))}
    path = tmp_path / 'misc.pth'
    torch.save(obj, path)
    out = safe_load(path)
    assert out['acc'] == 82.5 and out['arr'].tolist() == [0, 1, 2, 3]
    assert out['s'] == {1, 2} and isinstance(out['od'], OrderedDict)
    assert out['t'] == (1, 'a', None) and out['dtype'] is torch.float16
    assert out['size'] == torch.Size([2, 3]) and isinstance(out['p'], torch.nn.Parameter)


def test_safe_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_load(tmp_path / 'nope.pth')


# ------------------------------------------------------------------ load_official_state_dict


def test_load_official_state_dict_model_and_ema(official_files):
    path, sd = official_files['vanilla_vmamba_tiny']
    model = load_official_state_dict(path)
    ema = load_official_state_dict(path, use_ema=True)
    assert list(model) == list(sd) and list(ema) == list(sd)
    k = 'classifier.head.weight'
    assert torch.equal(model[k], sd[k]) and torch.equal(ema[k], sd[k] + 1.0)


def test_load_official_state_dict_errors(tmp_path):
    path = tmp_path / 'noema.pth'
    torch.save({'model': {'w': torch.ones(1)}, 'epoch': 3}, path)
    with pytest.raises(CheckpointContentError) as info:
        load_official_state_dict(path, use_ema=True)
    assert str(path) in str(info.value) and "'model'" in str(info.value)
    assert "'epoch'" in str(info.value)

    path2 = tmp_path / 'nothing.pth'
    torch.save({'optimizer': {}, 'epoch': 1}, path2)
    with pytest.raises(CheckpointContentError, match=r"'optimizer', 'epoch'"):
        load_official_state_dict(path2)


def test_load_bare_and_detection_state_dicts(tmp_path):
    bare = OrderedDict(w=torch.ones(2))
    torch.save(bare, tmp_path / 'bare.pth')
    assert list(load_official_state_dict(tmp_path / 'bare.pth')) == ['w']
    torch.save({'meta': {'epoch': 12}, 'state_dict': bare}, tmp_path / 'det.pth')
    assert list(load_official_state_dict(tmp_path / 'det.pth')) == ['w']


# -------------------------------------------------------------- convert_official_state_dict


@pytest.mark.parametrize('name', ['vmamba_tiny_s1l8', 'vanilla_vmamba_tiny'])
def test_convert_classification(official_files, name):
    path, sd = official_files[name]
    out = convert_official_state_dict(load_official_state_dict(path))
    assert len(out) == len(sd)
    assert torch.equal(out['backbone.outnorm3.weight'], sd['classifier.norm.weight'])
    assert torch.equal(out['backbone.outnorm3.bias'], sd['classifier.norm.bias'])
    assert torch.equal(out['head.fc.weight'], sd['classifier.head.weight'])
    assert torch.equal(out['head.fc.bias'], sd['classifier.head.bias'])
    for k, v in sd.items():
        if not k.startswith('classifier.'):
            assert out['backbone.' + k] is not None and torch.equal(out['backbone.' + k], v)
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in out)


def test_convert_legacy_names_and_module_prefix():
    t = {k: torch.randn(2) for k in range(8)}
    legacy = OrderedDict([
        ('module.patch_embed.proj.weight', t[0]),
        ('module.patch_embed.norm.bias', t[1]),
        ('module.layers.0.blocks.0.ln_1.weight', t[2]),
        ('module.layers.0.blocks.0.self_attention.A_logs', t[3]),
        ('module.layers.1.blocks.3.self_attention.out_proj.weight', t[4]),
        ('module.norm.weight', t[5]),
        ('module.head.bias', t[6]),
        ('module.some_future_param', t[7]),
    ])
    out, mapping = convert_official_state_dict(legacy, return_mapping=True)
    assert list(out) == [
        'backbone.patch_embed.0.weight', 'backbone.patch_embed.2.bias',
        'backbone.layers.0.blocks.0.norm.weight', 'backbone.layers.0.blocks.0.op.A_logs',
        'backbone.layers.1.blocks.3.op.out_proj.weight', 'backbone.outnorm1.weight',
        'head.fc.bias', 'backbone.some_future_param'
    ]
    assert all(out[new] is legacy[old] for old, new in mapping)
    # num_stages overrides the inferred last stage
    assert 'backbone.outnorm3.weight' in convert_official_state_dict(legacy, num_stages=4)


def test_convert_rejects_colliding_keys():
    sd = {'layers.0.blocks.0.ln_1.weight': torch.ones(1),
          'layers.0.blocks.0.norm.weight': torch.ones(1)}
    with pytest.raises(CheckpointContentError, match='both map to'):
        convert_official_state_dict(sd)


def test_convert_detection_checkpoint_keeps_layout(official_files):
    _, sd = official_files['vmamba_tiny_s1l8']
    det = OrderedDict()
    for k, v in sd.items():
        if not k.startswith('classifier.'):
            det['backbone.' + k] = v
    for i, dim in enumerate([96, 192, 384, 768]):
        det[f'backbone.outnorm{i}.weight'] = torch.randn(dim)
        det[f'backbone.outnorm{i}.bias'] = torch.randn(dim)
    det['neck.lateral_convs.0.conv.weight'] = torch.randn(256, 96, 1, 1)
    det['rpn_head.rpn_conv.weight'] = torch.randn(256, 256, 3, 3)
    det['roi_head.bbox_head.fc_cls.weight'] = torch.randn(81, 1024)
    out = convert_official_state_dict(det)
    assert list(out) == list(det)
    assert all(out[k] is det[k] for k in det)
    # legacy names inside backbone. are renamed, nothing else
    legacy = OrderedDict({'backbone.layers.0.blocks.0.ln_1.weight': torch.ones(1),
                          'backbone.patch_embed.proj.weight': torch.ones(1),
                          'decode_head.norm.weight': torch.ones(1),
                          'module.auxiliary_head.conv_seg.weight': torch.ones(1)})
    assert list(convert_official_state_dict(legacy, task='seg')) == [
        'backbone.layers.0.blocks.0.norm.weight', 'backbone.patch_embed.0.weight',
        'decode_head.norm.weight', 'auxiliary_head.conv_seg.weight'
    ]


def test_convert_unknown_task():
    with pytest.raises(ValueError, match='unknown task'):
        convert_official_state_dict({}, task='video')


# ------------------------------------------------------------------------------------ CLI


def test_cli_help_mentions_restricted_unpickler():
    proc = _run_cli('--help')
    assert proc.returncode == 0
    text = ' '.join(proc.stdout.split())
    assert 'restricted unpickler' in text and 'never runs code from the file' in text


@pytest.mark.parametrize('ema', [False, True])
def test_cli_round_trip(official_files, tmp_path, ema):
    path, sd = official_files['vmamba_tiny_s1l8']
    out = tmp_path / 'converted' / 'tiny.pth'
    extra = ['--ema'] if ema else []
    if ema:
        rc, stdout, stderr = _cli_in_process(path, out, *extra)
    else:  # the real command line, in a fresh interpreter
        proc = _run_cli(path, out, *extra)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    assert rc == 0, stderr
    assert f'wrote {len(sd)} keys' in stdout and 'head.fc' in stdout
    assert 'classifier.norm.weight -> backbone.outnorm3.weight' in stdout
    ckpt = torch.load(out, weights_only=True)  # output needs no unsafe unpickling at all
    assert ckpt['meta']['ema'] is ema and ckpt['meta']['source'] == str(path)
    conv = ckpt['state_dict']
    assert len(conv) == len(sd)
    shift = 1.0 if ema else 0.0
    expected = convert_official_state_dict(sd)
    for k, v in expected.items():
        assert torch.equal(conv[k], v + shift), k


def test_cli_missing_input(tmp_path):
    missing = tmp_path / 'does_not_exist.pth'
    proc = _run_cli(missing, tmp_path / 'o.pth')
    assert proc.returncode != 0 and str(missing) in proc.stderr


def test_cli_no_weights(tmp_path):
    path = tmp_path / 'opt_only.pth'
    torch.save({'optimizer': {}, 'lr_scheduler': {}, 'epoch': 3}, path)
    rc, _, stderr = _cli_in_process(path, tmp_path / 'o.pth')
    assert rc != 0
    assert "'optimizer'" in stderr and "'lr_scheduler'" in stderr and str(path) in stderr
    rc, _, stderr = _cli_in_process(path, tmp_path / 'o.pth', '--ema')
    assert rc != 0 and 'model_ema' in stderr
    assert not (tmp_path / 'o.pth').exists()


# ------------------------------------------------------------- into the real mmpretrain model


@pytest.mark.parametrize('name,arch', [('vmamba_tiny_s1l8', 'tiny-s1l8'),
                                       ('vanilla_vmamba_tiny', 'vanilla-tiny')])
def test_converted_backbone_loads_strictly_into_vssm(official_files, name, arch):
    models = pytest.importorskip('vmamba_mm.models')
    _, sd = official_files[name]
    conv = convert_official_state_dict(sd)
    backbone = OrderedDict((k[len('backbone.'):], v) for k, v in conv.items()
                           if k.startswith('backbone.'))
    assert len(backbone) == len(sd) - 2  # all but classifier.head.{weight,bias}
    model = models.VSSM(arch=arch, out_indices=(3, ))
    result = model.load_state_dict(backbone, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    for k, v in backbone.items():
        assert torch.equal(own[k], v), k


def test_converted_checkpoint_loads_strictly_into_mmpretrain_model(official_files, tmp_path):
    pytest.importorskip('mmpretrain')
    mmengine_config = pytest.importorskip('mmengine.config')
    pytest.importorskip('vmamba_mm.models')
    from mmengine.runner.checkpoint import load_checkpoint
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    import vmamba_mm  # noqa: F401  (registers the models and the checkpoint loader)
    register_all_modules(init_default_scope=True)
    path, sd = official_files['vmamba_tiny_s1l8']
    out = tmp_path / 'tiny_mm.pth'
    assert _run_cli(path, out).returncode == 0

    cfg = mmengine_config.Config.fromfile(IMAGENET_TINY)
    model_cfg = cfg.model
    if 'data_preprocessor' in cfg and 'data_preprocessor' not in model_cfg:
        # what mmengine's Runner does: the top-level data_preprocessor goes into the model
        model_cfg.data_preprocessor = cfg.data_preprocessor
    model_cfg.pop('init_cfg', None)
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone.pop('init_cfg', None)
    model = MODELS.build(model_cfg)
    own = model.state_dict()
    conv = torch.load(out, weights_only=True)['state_dict']
    assert sorted(set(own) - set(conv)) == [] and sorted(set(conv) - set(own)) == []
    for k in conv:
        assert own[k].shape == conv[k].shape, k
    load_checkpoint(model, str(out), map_location='cpu', strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, conv[k]), k


# ------------------------------------------------------------ files that are not checkpoints


def _not_checkpoints(folder):
    """Files a user may hand over as a checkpoint, each written as its kind would be."""
    torch.save({'state_dict': {'w': torch.ones(64)}}, folder / 'whole.pth')
    whole = (folder / 'whole.pth').read_bytes()
    contents = {
        'random bytes': bytes(torch.randint(0, 256, (4096, ), dtype=torch.uint8,
                                            generator=torch.Generator().manual_seed(5)).tolist()),
        'empty': b'',
        'truncated zip': whole[:len(whole) // 2],
        'text': b'{"model": "not a checkpoint"}\n',
    }
    for kind, data in contents.items():
        (folder / f'{kind.replace(" ", "_")}.pth').write_bytes(data)
    return {kind: folder / f'{kind.replace(" ", "_")}.pth' for kind in contents}


@pytest.mark.parametrize('reader', [safe_load, trusted_load])
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, reader):
    for kind, path in _not_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointReadError) as info:
            reader(str(path))
        message = str(info.value)
        assert message.startswith(f'{path} is not a readable PyTorch checkpoint ('), (kind, message)
        assert info.value.__cause__ is not None, kind  # what failed stays in the chain
        assert isinstance(info.value, CheckpointContentError)
    with pytest.raises(CheckpointReadError, match=r'\(the file is empty\)'):
        reader(str(tmp_path / 'empty.pth'))


def test_trusted_load_still_refuses_code(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'x': _SystemCall(f'touch {marker}')}, path)
    with pytest.raises(UnsafeCheckpointError, match='system'):
        trusted_load(str(path))
    assert not marker.exists()


def test_cli_names_an_input_that_is_not_a_checkpoint(tmp_path):
    path = _not_checkpoints(tmp_path)['random bytes']
    rc, _, stderr = _cli_in_process(path, tmp_path / 'out.pth')
    assert rc == 2 and stderr.startswith(f'error: {path} is not a readable PyTorch checkpoint')
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / 'out.pth').exists()


def test_cli_never_writes_over_its_input(official_files, tmp_path):
    source, _ = official_files['vmamba_tiny_s1l8']
    original = source.read_bytes()
    link = tmp_path / 'link.pth'
    link.symlink_to(source)
    relative = os.path.relpath(source, ROOT)  # resolved from ROOT, the cwd below
    for out in (source, link, relative):
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            rc, _, stderr = _cli_in_process(source, out)
        finally:
            os.chdir(cwd)
        assert rc == 2 and f'OUT {out} is the input file {source}' in stderr, stderr
    assert source.read_bytes() == original


def test_cli_names_a_file_in_the_way_of_the_output_folder(official_files, tmp_path):
    source, _ = official_files['vmamba_tiny_s1l8']
    blocking = tmp_path / 'checkpoints'
    blocking.write_text('a file, not a folder')
    for out in (blocking / 'tiny.pth', blocking / 'sub' / 'tiny.pth'):
        rc, _, stderr = _cli_in_process(source, out)
        assert rc == 2 and stderr.strip().splitlines() == [
            f'error: cannot create the folder of OUT {out}: {blocking} is a file, not a '
            f'folder; choose another output path.']


def test_cli_names_an_output_folder_that_takes_no_files(official_files, tmp_path):
    source, _ = official_files['vmamba_tiny_s1l8']
    for out in ('/proc/tiny.pth', '/proc/sub/tiny.pth'):
        rc, stdout, stderr = _cli_in_process(source, out)
        assert rc == 2 and stdout == '' and stderr.strip().splitlines() == [
            f'error: OUT {out}: cannot create files under /proc (No such file or directory); '
            f'choose a writable path.']


def test_cli_refuses_a_task_the_keys_contradict(official_files, tmp_path):
    source, sd = official_files['vmamba_tiny_s1l8']
    out = tmp_path / 'det.pth'
    for task in ('det', 'seg'):
        rc, stdout, stderr = _cli_in_process(source, out, '--task', task)
        lines = stderr.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and not out.exists(), stderr
        assert lines[0].startswith(f'error: --task {task}: IN has no keys under "backbone.", so '
                                   f'it is a classification checkpoint ({len(sd)} keys')
        assert 'Convert it without --task' in lines[0]
    # Converted without --task, the same file says which layout it got; that output is itself
    # a detection-style file, which --task cls would prefix twice.
    rc, stdout, _ = _cli_in_process(source, out)
    assert rc == 0 and 'layout: classification (auto, from the keys)' in stdout
    rc, _, stderr = _cli_in_process(out, tmp_path / 'twice.pth', '--task', 'cls')
    assert rc == 2 and f'{len(sd) - 2} of the {len(sd)} keys of IN are under "backbone."' in \
        stderr and 'backbone.backbone.*' in stderr
    rc, stdout, _ = _cli_in_process(out, tmp_path / 'dense.pth', '--task', 'det')
    assert rc == 0 and 'layout: detection/segmentation (--task det)' in stdout


def test_cli_killed_before_the_rename_leaves_the_previous_output(official_files, tmp_path):
    source, sd = official_files['vmamba_tiny_s1l8']
    out = tmp_path / 'tiny.pth'
    out.write_bytes(b'the previous conversion')
    # The kill comes where the complete temporary file would be renamed into place.
    killed = subprocess.run([sys.executable, '-c', textwrap.dedent(f'''
        import os, runpy, signal, sys
        os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        sys.argv = [{CLI!r}, {str(source)!r}, {str(out)!r}]
        runpy.run_path({CLI!r}, run_name='__main__')
    ''')], capture_output=True, text=True, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr
    assert out.read_bytes() == b'the previous conversion'
    rc, _, stderr = _cli_in_process(source, out)
    assert rc == 0, stderr
    assert len(torch.load(out, weights_only=True)['state_dict']) == len(sd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['tiny.pth']  # no temporary left over
