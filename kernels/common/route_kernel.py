"""The C++ route kernel (``csrc/selective_scan_cpu.cpp``: ``route_scan_forward`` and
``route_scan_backward``) as the operators of ``cross_selective_scan`` (SS2D's routes) and
``v2m_scan`` (V2M's lines) call it: the kernel's arguments, its gradients summed over the batch,
their fake shapes, and their casts back for autograd.

A call gives the map x, delta (routes, B, L, C) before its bias, the projections
(B, L, routes, R + 2N), A, D, delta_bias, the route table ``pixels`` and the layout: ``segment``
(tokens per sequence), ``x_per_route`` and ``y_per_route`` (see the kernel's comment).
``route_scan_flops`` is both operators' FLOP rule.
"""
import torch

from ..selective_scan.flops import selective_scan_macs
from .cpu_extension import float32_contiguous, load_extension


def _kernel_inputs(x, delta, projected, A, D, delta_bias):
    return [float32_contiguous(t, x) for t in (x, delta, projected, A, D, delta_bias)]


def route_scan(x, delta, projected, A, D, delta_bias, pixels, segment, x_per_route,
               y_per_route):
    """The forward kernel, delta with softplus: float32 y."""
    return load_extension().route_scan_forward(
        *_kernel_inputs(x, delta, projected, A, D, delta_bias), True, pixels.contiguous(),
        segment, x_per_route, y_per_route)


def route_scan_gradients(x, delta, projected, A, D, delta_bias, pixels, segment, x_per_route,
                         y_per_route, grad_y):
    """(dx, ddelta, dprojected, dA, dD, ddelta_bias), float32, from the backward kernel (one
    pass per image, recomputing the forward); dprojected is zero in the low-rank columns (the
    kernel reads delta, not them); dD and ddelta_bias are zeros when absent."""
    dx, ddelta, dprojected, dA, dD, dbias = load_extension().route_scan_backward(
        *_kernel_inputs(x, delta, projected, A, D, delta_bias), True, pixels.contiguous(),
        segment, x_per_route, y_per_route, grad_y.float().contiguous())
    return dx, ddelta, dprojected, dA.sum(0), dD.sum(0), dbias.sum(0)


def fake_gradients(x, delta, projected, A):
    """Empty tensors of ``route_scan_gradients``' shapes, for the operators' fake kernels."""
    float32 = dict(dtype=torch.float32)
    return (x.new_empty(x.shape, **float32), delta.new_empty(delta.shape, **float32),
            projected.new_empty(projected.shape, **float32), A.new_empty(A.shape, **float32),
            A.new_empty(A.shape[0], **float32), A.new_empty(A.shape[0], **float32))


def gradients_for_autograd(gradients, x, delta, projected, D, delta_bias):
    """The operator's gradients as autograd takes them: each in its input's dtype, None for an
    absent D or bias."""
    dx, ddelta, dprojected, dA, dD, dbias = gradients
    return (dx.to(x.dtype), ddelta.to(delta.dtype), dprojected.to(projected.dtype), dA,
            dD if D is not None else None, dbias if delta_bias is not None else None)


def route_scan_flops(x, delta, projected, A, D, *rest, out_shape=None, **kwargs):
    """The FLOP rule (``torch.utils.flop_counter`` shapes) of an operator that calls the route
    kernel: its delta comes in computed (a bmm the counter counts itself), so the rule is the
    selective scan of every route's channels over every token (``selective_scan/flops.py``)."""
    routes, batch, length, channels = delta
    return 2 * selective_scan_macs(batch, routes * channels, length, A[1],
                                   with_skip=D is not None)
