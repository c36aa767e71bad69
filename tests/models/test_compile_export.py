"""VMamba-T and 2DVMamba-T under torch.compile(fullgraph=True) and torch.export on the CPU,
against eager.

fullgraph=True fails on any graph break, so these runs prove that every scan kernel reaches the
graph as one operator. The compiler backend is ``aot_eager`` (dynamo capture plus AOT autograd,
the part that sees the custom ops and their autograd formulas); Inductor's code generation adds
minutes on two cores and no further check of our code (it is timed in the README).
"""
import copy

import pytest
import torch

from vmamba_kernels import available_backends
from vmamba_mm.models import VSSM

# The CPU's automatic choice; the torch backend must at least export (ONNX builds on it).
COMPILED = [b for b in ('cpp', ) if b in available_backends('cross_selective_scan')]
EXPORTED = COMPILED + ['torch']
# VMamba-T, and 2DVMamba-T on a non-square input (its routes scan 16x12 and 12x16 grids).
ARCHS = [('tiny-s1l8', (2, 3, 64, 64)), ('2dvmamba-tiny', (1, 3, 64, 48))]
# The scan operators each exported program holds: the C++ scan is one node; the torch backend
# is plain aten ops.
EXPORTED_SCAN_OPS = {('tiny-s1l8', 'cpp'): {'vmamba.selective_scan_cpp.default'},
                     ('2dvmamba-tiny', 'cpp'): {'vmamba.selective_scan_2d_cpp.default'}}


def vmamba_t(arch, backend, **kwargs):
    torch.manual_seed(0)
    return VSSM(arch, out_indices=(0, 1, 2, 3), scan_backend=backend, **kwargs)


def assert_same_outputs(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('arch, shape', ARCHS)
@pytest.mark.parametrize('backend', COMPILED)
def test_compiled_inference_matches_eager(backend, arch, shape):
    model = vmamba_t(arch, backend).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
        assert_same_outputs(compiled(x), expected)


# VMamba-T only: a compiled training step takes minutes here, and the 2D scan's operator passes
# opcheck's AOT-autograd checks (tests/kernels/test_selective_scan_2d_cpp.py).
@pytest.mark.parametrize('arch, shape', ARCHS[:1])
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


@pytest.mark.parametrize('arch, shape', ARCHS)
@pytest.mark.parametrize('backend', EXPORTED)
def test_export_matches_eager(backend, arch, shape):
    model = vmamba_t(arch, backend).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    program = torch.export.export(model, (x, ))
    scan_ops = {str(node.target) for node in program.graph.nodes
                if str(node.target).startswith('vmamba.')}
    assert scan_ops == EXPORTED_SCAN_OPS.get((arch, backend), set())
    with torch.no_grad():
        assert_same_outputs(program.module()(x), expected)
