"""``v2m_scan``, V2M's scan stage over the lines of a map: every backend against the sequential
reference in value and gradient (odd and non-square maps, N > 1, channel counts on and off the
C++ kernel's 16-lane blocks, without D or bias, half inputs); the reference against the
recurrence written out by hand for a two-pixel row and column; the C++ operators under opcheck;
the one-line errors."""
import math

import pytest
import torch
import torch.nn.functional as F

import vmamba_kernels
from vmamba_kernels import available_backends, v2m_scan
from vmamba_kernels.common.cases import examples_of

EXAMPLES = examples_of('v2m_scan')
BACKENDS = [b for b in ('torch', 'cpp') if b in available_backends('v2m_scan')]
# (batch, channels, H, W, rank, N, stage): 16-lane blocks with a scalar tail (20, 35), one
# block (16), under one (3); odd and non-square maps; a one-pixel-long line.
SHAPES = [(2, 20, 5, 7, 3, 2, 'row'), (2, 20, 5, 7, 3, 2, 'column'), (1, 16, 4, 9, 2, 4, 'row'),
          (1, 35, 9, 4, 2, 1, 'column'), (1, 3, 1, 6, 1, 3, 'column'), (1, 3, 6, 1, 2, 1, 'row')]


def leaves(tensors):
    return {k: (v.detach().clone().requires_grad_() if v is not None else None)
            for k, v in tensors.items()}


def outputs_and_gradients(tensors, stage, backend, seed=1):
    inputs = leaves(tensors)
    y = v2m_scan(*inputs.values(), stage=stage, backend=backend)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    (y * grad_y).sum().backward()
    return y, {k: v.grad for k, v in inputs.items() if v is not None}


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('without', [(), ('D', 'delta_bias')])
@pytest.mark.parametrize('shape', SHAPES, ids=[EXAMPLES.label(s) for s in SHAPES])
def test_every_backend_matches_the_reference_in_value_and_gradient(shape, without, backend):
    tensors, kwargs = EXAMPLES.make(shape)
    for name in without:
        tensors[name] = None
    y, grads = outputs_and_gradients(tensors, kwargs['stage'], backend)
    y_ref, grads_ref = outputs_and_gradients(tensors, kwargs['stage'], 'reference')
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-4, atol=1e-4,
                                   msg=lambda m, name=name: f'd{name}: {m}')


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_inputs_scan_in_float32(backend, dtype):
    tensors, kwargs = EXAMPLES.make((1, 18, 5, 6, 2, 2, 'column'), dtype=dtype)
    y = v2m_scan(*tensors.values(), backend=backend, **kwargs)
    # The reference of the same (rounded) map: the scan itself runs in float32.
    rounded = dict(tensors, x=tensors['x'].float())
    x_proj, dt_proj = rounded['x_proj_weight'], rounded['dt_projs_weight']
    rounded['x_proj_weight'], rounded['dt_projs_weight'] = x_proj.to(dtype), dt_proj.to(dtype)
    rounded = {k: (v.float() if v is not None else None) for k, v in rounded.items()}
    expected = v2m_scan(*rounded.values(), backend='reference', **kwargs)
    assert y.dtype == torch.float32
    # The projections run in the half type (as the model's layers do under autocast): their
    # rounding, 2**-8 (bfloat16) or 2**-11 (float16) relative, is all that differs.
    tolerance = 5e-2 if dtype == torch.bfloat16 else 1e-2
    torch.testing.assert_close(y, expected, rtol=tolerance, atol=tolerance)


def by_hand(stage, tensors):
    """The stage on a two-pixel line (1 x 2 map for the rows, 2 x 1 for the columns), one
    channel, N = 1, written out per orientation from the contract."""
    x, x_proj, dt_proj, A, D, bias = tensors.values()
    outputs = []
    for o in range(4):
        flip_rows, flip_columns = vmamba_kernels.ORIENTATION_FLIPS[o]
        u = x.reshape(2) if stage == 'row' else x[..., o, :].reshape(2)
        proj = [x_proj[o, :, 0] * u[t] for t in range(2)]  # (delta rank 1, B or C) per pixel
        step = [F.softplus(proj[t][0] * dt_proj[o, 0, 0] + bias[o]) for t in range(2)]
        state_in = [proj[t][1] for t in range(2)]
        first, second = (1, 0) if (flip_columns if stage == 'row' else flip_rows) else (0, 1)
        b = state_in if stage == 'row' else [1.0, 1.0]
        c = [1.0, 1.0] if stage == 'row' else state_in
        h_first = step[first] * u[first] * b[first]
        h_second = math.exp(step[second] * A[o, 0]) * h_first + step[second] * u[second] * \
            b[second]
        y = [None, None]
        y[first] = c[first] * h_first + D[o] * u[first]
        y[second] = c[second] * h_second + D[o] * u[second]
        outputs.append(torch.stack(y))
    if stage == 'row':
        return torch.stack(outputs, dim=1).view(1, 1, 2, 4, 1)
    return sum(outputs).view(1, 2, 1, 1)


@pytest.mark.parametrize('stage', ['row', 'column'])
def test_the_reference_is_the_recurrence_written_out_by_hand(stage):
    shape = (1, 1, 1, 2, 1, 1, 'row') if stage == 'row' else (1, 1, 2, 1, 1, 1, 'column')
    tensors, kwargs = EXAMPLES.make(shape, seed=3)
    expected = by_hand(stage, tensors)
    for backend in ['reference', *BACKENDS]:
        got = v2m_scan(*tensors.values(), backend=backend, **kwargs)
        torch.testing.assert_close(got, expected.float(), msg=backend)


@pytest.mark.skipif('cpp' not in available_backends('v2m_scan'),
                    reason='the C++ CPU kernel could not be built here')
@pytest.mark.parametrize('stage', ['row', 'column'])
def test_the_cpp_operators_pass_opcheck(stage):
    from vmamba_kernels.common.lines import line_length, line_table
    from vmamba_kernels.v2m_scan.cpp import v2m_scan_cpp, v2m_scan_cpp_backward
    gen = torch.Generator().manual_seed(0)
    batch, height, width, channels, rank, state = 2, 3, 5, 17, 2, 2
    per_orientation = 4 if stage == 'column' else 1
    x = torch.randn(batch, height, width, per_orientation * channels, generator=gen)
    delta = torch.randn(4, batch, height * width, channels, generator=gen)
    projected = torch.randn(batch, height * width, 4, rank + 2 * state, generator=gen)
    A = -torch.rand(4 * channels, state, generator=gen) - 0.1
    D, bias = torch.randn(4 * channels, generator=gen), torch.randn(4 * channels, generator=gen)
    layout = (line_table(stage, height, width, 'cpu'), line_length(stage, height, width),
              stage == 'column', stage == 'row')
    args = [t.requires_grad_() for t in (x, delta, projected, A, D, bias)]
    torch.library.opcheck(v2m_scan_cpp, (*args, *layout))
    torch.library.opcheck(v2m_scan_cpp, (*args[:4], None, None, *layout))
    y = v2m_scan_cpp(*args, *layout)
    grad_y = torch.randn(y.shape, generator=gen)
    torch.library.opcheck(v2m_scan_cpp_backward,
                          (*(t.detach() for t in args), *layout, grad_y))


def test_errors_name_the_bad_input():
    tensors, _ = EXAMPLES.make((1, 4, 3, 5, 2, 1, 'column'))
    args = list(tensors.values())
    with pytest.raises(ValueError, match=r"Unknown V2M scan stage 'rows'; choose 'row'"):
        v2m_scan(*args, stage='rows')
    with pytest.raises(ValueError, match=r'v2m_scan: x has shape \(1, 3, 5, 4, 4\), expected '
                                         r'\(B, H, W, C\) \(the row stage'):
        v2m_scan(*args, stage='row')
    with pytest.raises(ValueError, match=r'v2m_scan: A has shape \(12, 1\), expected \(16, N\)'):
        v2m_scan(*args[:3], args[3][:12], *args[4:], stage='column')
    with pytest.raises(ValueError, match=r'v2m_scan: dt_projs_weight has shape \(4, 4, 3\), '
                                         r'expected \(4, 4, 2\)'):
        v2m_scan(*args[:2], torch.zeros(4, 4, 3), *args[3:], stage='column')
