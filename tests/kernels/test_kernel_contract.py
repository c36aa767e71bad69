"""The kernel contract: every operation folder has the same shape and registers its backends,
input check and example inputs; backend names an operation lacks run its 'torch' backend, saying
so; the backend choice reaches a run's log; and a new operation is one new folder (a dry run on a
copy of kernels/)."""
import logging
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch

import vmamba_kernels
from tests.paths import ROOT
from vmamba_kernels import dispatch
from vmamba_kernels.common.cases import examples_of

KERNELS = osp.join(ROOT, 'kernels')
FOLDER_FILES = ('__init__.py', 'reference.py', 'torch.py', 'flops.py', 'cases.py')


@pytest.mark.parametrize('package', vmamba_kernels.operation_packages())
def test_every_operation_folder_has_the_same_shape(package):
    folder = osp.join(KERNELS, package.rsplit('.', 1)[-1])
    missing = [name for name in FOLDER_FILES if not osp.isfile(osp.join(folder, name))]
    assert not missing, f'{folder} lacks {missing}'
    # One file per backend, named after it: no other module beside the contract's files.
    backend_files = {'cpp.py', 'triton.py', 'cuda.py'}
    others = sorted(name for name in os.listdir(folder) if name.endswith('.py')
                    and name not in FOLDER_FILES and name not in backend_files)
    assert not others, f'{folder} holds {others}: helpers go to common/, oracles to tests/'


@pytest.mark.parametrize('operation', dispatch.operations())
def test_every_operation_has_a_reference_a_torch_backend_a_check_and_examples(operation):
    assert {'reference', 'torch'} <= set(dispatch.backends_of(operation))
    assert operation in dispatch._INPUT_CHECKS
    examples = examples_of(operation)
    size = next(iter(examples.shapes))
    label, shape = examples.cases(size)[0]
    tensors, kwargs = examples.make(shape)
    # The examples run through the public function and agree with the reference backend.
    public = getattr(vmamba_kernels, operation)
    out = public(*tensors.values(), backend='torch', **kwargs)
    ref = public(*tensors.values(), backend='reference', **kwargs)
    for got, want in zip(*(o if isinstance(o, tuple) else (o, ) for o in (out, ref))):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f'{operation} {label}')


def test_the_public_names_are_exported_and_the_function_wins_over_its_folder():
    for name in ('selective_scan', 'cross_selective_scan', 'cross_scan', 'cross_merge',
                 'selective_scan_2d', 'cross_selective_scan_2d', 'depthwise_conv_silu',
                 'add_layer_norm', 'available_backends', 'resolve', 'resolve_backend_name',
                 'set_default_backend', 'NUM_ROUTES', 'SCAN_ORDERS', 'ORDER_CODES',
                 'route_pixels', 'pixel_steps', 'route_parameters'):
        assert name in vmamba_kernels.__all__ and hasattr(vmamba_kernels, name), name
    assert callable(vmamba_kernels.selective_scan)
    from vmamba_kernels.selective_scan import reference
    assert reference.__name__ == 'vmamba_kernels.selective_scan.reference'
    from vmamba_kernels.routes import NUM_ROUTES
    assert NUM_ROUTES == vmamba_kernels.NUM_ROUTES


def test_a_bound_operation_checks_inputs_as_the_public_function_does():
    tensors, kwargs = examples_of('cross_selective_scan').make((1, 4, 3, 5, 2, 2))
    args = list(tensors.values())
    args[1] = args[1][:, :, :3]  # x_proj_weight for 3 channels, not 4
    message = r'cross_selective_scan: x_proj_weight has shape \(4, 6, 3\)'
    with pytest.raises(ValueError, match=message):
        vmamba_kernels.cross_selective_scan(*args, **kwargs)
    with pytest.raises(ValueError, match=message):
        dispatch.bind('cross_selective_scan', 'torch')(*args, **kwargs)


def test_a_backend_name_the_operation_lacks_runs_its_torch_backend_and_says_so(
        monkeypatch, caplog):
    monkeypatch.setattr(dispatch, '_logged', set())
    monkeypatch.setattr(dispatch, '_default_backend', None)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    assert 'cpp' not in dispatch.backends_of('add_layer_norm')
    tensors, kwargs = examples_of('add_layer_norm').make((2, 8, 5, 7))
    with caplog.at_level(logging.INFO, logger='vmamba_kernels'):
        total, normed = vmamba_kernels.add_layer_norm(*tensors.values(), backend='cpp', **kwargs)
    x, residual, weight, bias = tensors.values()
    expected = torch.nn.functional.layer_norm((x + residual).movedim(1, -1), (8, ), weight,
                                              bias, 1e-5).movedim(-1, 1)
    torch.testing.assert_close(total, x + residual)
    torch.testing.assert_close(normed, expected)
    messages = [r.getMessage() for r in caplog.records]
    assert any("add_layer_norm on cpu uses the 'torch' backend" in m and
               "add_layer_norm has no 'cpp' backend; its 'torch' backend runs" in m
               for m in messages), messages
    # The same rule for a module's bound operation and for the process-wide default.
    assert dispatch.bind('add_layer_norm', 'cpp').backend('cpu') == 'torch'
    vmamba_kernels.set_default_backend('cpp')
    assert dispatch.bind('cross_scan').backend('cpu') == 'torch'
    if 'cpp' in vmamba_kernels.available_backends('selective_scan'):
        assert dispatch.bind('selective_scan').backend('cpu') == 'cpp'


def test_an_unknown_name_is_an_error_naming_the_valid_ones():
    tensors, kwargs = examples_of('add_layer_norm').make((1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"'cpu_fast'.*no backend of any operation.*"
                                         r"known backends: \['cpp', 'cuda', 'reference'"):
        vmamba_kernels.add_layer_norm(*tensors.values(), backend='cpu_fast', **kwargs)


def test_a_named_backend_that_cannot_run_is_an_error_never_a_fallback(monkeypatch):
    registry = {operation: dict(impls) for operation, impls in dispatch._IMPLEMENTATIONS.items()}
    monkeypatch.setattr(dispatch, '_IMPLEMENTATIONS', registry)
    dispatch.register('depthwise_conv_silu', 'broken', lambda *a: None, devices=('cpu', ),
                      unavailable_reason=lambda: 'its compiler is missing')
    tensors, kwargs = examples_of('depthwise_conv_silu').make((1, 4, 5, 5, 3))
    with pytest.raises(RuntimeError, match="'broken'.*not available for depthwise_conv_silu: "
                                           'its compiler is missing'):
        vmamba_kernels.depthwise_conv_silu(*tensors.values(), backend='broken', **kwargs)
    # An operation without the name runs its torch backend.
    assert dispatch.resolve('add_layer_norm', 'cpu', 'broken')[0].backend == 'torch'


def test_describe_tells_what_a_backend_is_and_whether_it_runs():
    described = dispatch.describe('selective_scan', 'torch')
    assert described.unavailable_reason is None and 'cpu' in described.devices
    with pytest.raises(ValueError, match="add_layer_norm has no 'cpp' backend; it has"):
        dispatch.describe('add_layer_norm', 'cpp')


def run_python(code, **env):
    environment = dict(os.environ, **env)
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, timeout=300)


CHOOSE_ONCE = '''
    import logging, sys
    import torch
    {setup}
    import vmamba_kernels
    vmamba_kernels.add_layer_norm(torch.ones(1, 2, 3), torch.ones(1, 2, 3), torch.ones(3),
                                  torch.zeros(3), backend='torch')
'''


def test_constant_result_marker_matches_dynamo():
    """The dispatch marks its backend choice constant for torch.compile without importing dynamo
    (seconds per process); the marker must stay what dynamo's own decorator sets."""
    import torch._dynamo

    def probe():
        return None

    marked = torch._dynamo.assume_constant_result(probe)
    dynamo_marks = {key: value for key, value in vars(marked).items()}
    ours = {key: value for key, value in vars(dispatch.resolve_backend_name).items()
            if key.startswith('_dynamo')}
    assert dynamo_marks and ours == dynamo_marks


def test_importing_the_kernels_leaves_dynamo_unloaded():
    result = subprocess.run(
        [sys.executable, '-c', 'import sys, vmamba_kernels; print("torch._dynamo" in sys.modules)'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'False'


def test_the_choice_is_on_stderr_without_logging_and_in_the_configured_log_with_it():
    alone = run_python(CHOOSE_ONCE.format(setup=''))
    assert alone.returncode == 0, alone.stderr
    assert alone.stderr.count("[vmamba_kernels] add_layer_norm on cpu uses the 'torch'") == 1
    configured = run_python(CHOOSE_ONCE.format(
        setup='logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s: '
              '%(message)s")'))
    assert configured.returncode == 0, configured.stderr
    assert 'add_layer_norm on cpu' not in configured.stderr
    assert configured.stdout.count("vmamba_kernels: add_layer_norm on cpu uses the 'torch'") == 1


def test_the_backend_choice_reaches_the_runs_log_file(tmp_path, monkeypatch):
    pytest.importorskip('mmengine')
    from mmengine.logging import MMLogger

    from vmamba_mm.registry import register_all_modules
    register_all_modules()
    monkeypatch.setattr(dispatch, '_logged', set())
    log_file = tmp_path / 'run.log'
    run_logger = MMLogger.get_instance('test_kernel_choice_in_the_run_log',
                                       log_file=str(log_file))
    tensors, kwargs = examples_of('add_layer_norm').make((1, 4, 2, 2))
    vmamba_kernels.add_layer_norm(*tensors.values(), backend='reference', **kwargs)
    for handler in run_logger.handlers:
        handler.flush()
    assert "add_layer_norm on cpu uses the 'reference' backend (tensor ops): requested by the " \
        "call's backend= argument" in log_file.read_text()


TOY_FILES = {
    '__init__.py': '''
        """toy_double(x) = 2 x: the smallest operation, to show what a new one touches."""
        from ..dispatch import register, register_input_check, run
        from . import flops, reference  # noqa: F401
        from . import torch as torch_backend

        __all__ = ['toy_double']

        register('toy_double', 'reference', reference.toy_double_reference, devices=('cpu', ))
        register('toy_double', 'torch', torch_backend.toy_double_torch, devices=('cpu', ),
                 priority=0, description='tensor ops')


        def check_inputs(x):
            if x.dim() != 1:
                raise ValueError(f'toy_double expects a vector, got shape {tuple(x.shape)}.')


        register_input_check('toy_double', check_inputs)


        def toy_double(x, backend=None):
            return run('toy_double', x.device.type, backend, x)
        ''',
    'reference.py': '''
        def toy_double_reference(x):
            return x + x
        ''',
    'torch.py': '''
        def toy_double_torch(x):
            return 2 * x
        ''',
    'flops.py': '''
        """No kernel operator, so no FLOP rule."""
        ''',
    'cases.py': '''
        import torch

        from ..common.cases import Examples, register_examples


        def make(shape, dtype=torch.float32, seed=0):
            gen = torch.Generator().manual_seed(seed)
            return dict(x=torch.randn(*shape, generator=gen).to(dtype)), {}


        register_examples(Examples('toy_double', shapes={'smoke': [(5, )], 'check': [(9, )]},
                                   make=make, label=lambda shape: f'n{shape[0]}'))
        ''',
}

TOY_CHECKS = '''
    import torch
    import vmamba_kernels
    from vmamba_kernels import dispatch
    from vmamba_mm.analysis.backend_check import correctness_cases
    assert vmamba_kernels.__file__.startswith({copy!r}), vmamba_kernels.__file__
    assert 'toy_double' in vmamba_kernels.__all__ and 'toy_double' in dispatch.operations()
    assert vmamba_kernels.toy_double(torch.ones(3)).tolist() == [2.0, 2.0, 2.0]
    assert dispatch.bind('toy_double', 'cpp').backend('cpu') == 'torch'
    try:
        vmamba_kernels.toy_double(torch.ones(2, 2))
    except ValueError as exc:
        assert 'toy_double expects a vector' in str(exc)
    else:
        raise AssertionError('the input check did not run')
    assert ('toy_double', 'n5', (5, )) in correctness_cases(smoke=True)
    print('toy operation discovered')
'''


def add_toy_operation(kernels_copy):
    toy = kernels_copy / 'toy_double'
    toy.mkdir()
    for name, text in TOY_FILES.items():
        (toy / name).write_text(textwrap.dedent(text).lstrip())


def test_a_new_operation_is_one_new_folder(tmp_path):
    copy = tmp_path / 'site' / 'vmamba_kernels'
    shutil.copytree(KERNELS, copy, ignore=shutil.ignore_patterns('__pycache__'))
    add_toy_operation(copy)
    # The copy differs from kernels/ by the new folder alone: nothing else was edited.
    added = sorted(str(p.relative_to(copy)) for p in copy.rglob('*')
                   if p.is_file() and not osp.exists(osp.join(KERNELS, p.relative_to(copy))))
    assert added == sorted(f'toy_double/{name}' for name in TOY_FILES)
    python_path = os.pathsep.join([str(copy.parent), ROOT])
    checked = run_python(TOY_CHECKS.format(copy=str(copy)), PYTHONPATH=python_path)
    assert checked.returncode == 0 and 'toy operation discovered' in checked.stdout, \
        checked.stdout + checked.stderr
    listed = subprocess.run([sys.executable, '-m', 'vmamba_kernels', 'toy_double'],
                            capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=python_path), timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert 'toy_double:' in listed.stdout and 'torch' in listed.stdout.split('toy_double:')[1]


def test_the_wheel_holds_every_operation_folder_found_not_listed(tmp_path):
    # A copy of the project with the toy operation added: setup.py finds its package, and the
    # wheel holds every file of kernels/ (the csrc sources as package data) under vmamba_kernels.
    project = tmp_path / 'project'
    project.mkdir()
    for name in ('setup.py', 'setup.cfg', 'pyproject.toml', 'README.md'):
        shutil.copy(osp.join(ROOT, name), project / name)
    for folder in ('kernels', 'vmamba_mm'):
        shutil.copytree(osp.join(ROOT, folder), project / folder,
                        ignore=shutil.ignore_patterns('__pycache__'))
    add_toy_operation(project / 'kernels')
    built = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                            '--no-build-isolation', '-w', str(tmp_path / 'wheel'), str(project)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel, ) = (tmp_path / 'wheel').glob('*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    kernels = project / 'kernels'
    expected = {'vmamba_kernels/' + str(p.relative_to(kernels)) for p in kernels.rglob('*')
                if p.is_file() and '__pycache__' not in p.parts}
    assert 'vmamba_kernels/toy_double/cases.py' in expected
    assert 'vmamba_kernels/csrc/selective_scan_cpu.cpp' in expected
    assert sorted(expected - names) == []
