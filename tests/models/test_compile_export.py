"""VMamba-T and 2DVMamba-T's blocks under torch.compile(fullgraph=True) and torch.export on the
CPU, against eager.

fullgraph=True fails on any graph break, so these runs prove that every scan kernel reaches the
graph as one operator. The compiler backend is ``aot_eager`` (dynamo capture plus AOT autograd,
the part that sees the custom ops and their autograd formulas); Inductor's code generation adds
minutes on two cores and no further check of our code (it is timed in the README).
"""
import copy

import pytest
import torch

from vmamba_kernels import available_backends
from vmamba_mm.models import ARCH_SETTINGS, VSSM

# The CPU's automatic choice; the torch backend must at least export (ONNX builds on it).
COMPILED = [b for b in ('cpp', ) if b in available_backends('cross_selective_scan')]
EXPORTED = COMPILED + ['torch']

def one_block_per_stage(arch):
    """An arch's blocks, one per stage: every block is the same code, and compiling twelve of
    them takes minutes here and checks nothing more."""
    return dict(ARCH_SETTINGS[arch], depths=[1, 1, 1, 1])


# VMamba-T, and 2DVMamba-T's blocks on a non-square input (its routes scan 16x12 and 12x16 grids).
ARCHS = [('tiny-s1l8', (2, 3, 64, 64)), (one_block_per_stage('2dvmamba-tiny'), (1, 3, 64, 48))]
ARCH_IDS = ['tiny-s1l8', '2dvmamba-tiny-one-block-per-stage']
# The scan operators each exported program holds: the C++ scan core (routes walked in place,
# with its own backward) is one node; the torch backend is plain aten ops.
EXPORTED_SCAN_OPS = {(False, 'cpp'): {'vmamba.cross_selective_scan_cpp.default'},
                     (True, 'cpp'): {'vmamba.selective_scan_2d_cpp.default'}}


def vmamba_t(arch, backend, **kwargs):
    torch.manual_seed(0)
    return VSSM(arch, out_indices=(0, 1, 2, 3), scan_backend=backend, **kwargs)


def assert_same_outputs(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('arch, shape', ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize('backend', COMPILED)
def test_compiled_inference_matches_eager(backend, arch, shape):
    model = vmamba_t(arch, backend).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
        assert_same_outputs(compiled(x), expected)


# VMamba-T's blocks only: the 2D scan's operators pass opcheck's AOT-autograd checks
# (tests/kernels/test_selective_scan_2d_cpp.py).
@pytest.mark.parametrize('arch, shape', [(one_block_per_stage('tiny-s1l8'), ARCHS[0][1])],
                         ids=['tiny-s1l8-one-block-per-stage'])
@pytest.mark.parametrize('backend', COMPILED)
def test_compiled_training_step_matches_eager(backend, arch, shape):
    eager = vmamba_t(arch, backend, drop_path_rate=0.0).train()
    compiled_copy = copy.deepcopy(eager)
    compiled = torch.compile(compiled_copy, fullgraph=True, backend='aot_eager')
    x = torch.randn(shape)

    def step(model, params):
        loss = sum(out.square().mean() for out in model(x))
        grads = torch.autograd.grad(loss, params)
        return loss.detach(), grads

    loss, grads = step(eager, list(eager.parameters()))
    compiled_loss, compiled_grads = step(compiled, list(compiled_copy.parameters()))
    torch.testing.assert_close(compiled_loss, loss)
    for (name, _), got, want in zip(eager.named_parameters(), compiled_grads, grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize('arch, shape', ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize('backend', EXPORTED)
def test_export_matches_eager(backend, arch, shape):
    model = vmamba_t(arch, backend).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    program = torch.export.export(model, (x, ))
    scan_ops = {str(node.target) for node in program.graph.nodes
                if str(node.target).startswith('vmamba.')}
    assert scan_ops == EXPORTED_SCAN_OPS.get((model.arch_settings['scan_2d'], backend), set())
    with torch.no_grad():
        assert_same_outputs(program.module()(x), expected)
