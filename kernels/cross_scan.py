"""Cross-scan and cross-merge: a 2D map as four 1D routes for the selective scan, and back.

Orders (official ``scans`` codes 0 / 2 / 1 in brackets):
    'cross'          (0): row-major, column-major, and both reversed;
    'bidirectional'  (2): row-major twice and row-major reversed twice;
    'unidirectional' (1): row-major four times.
Every order yields K = 4 routes, so the four sets of SSM parameters of a block always apply.
``cross_merge`` is the adjoint of ``cross_scan`` (it sums the routes back into place), so each is
the other's backward. On CUDA (with Triton) each is one Triton pass, the other's kernel serving as
its backward; elsewhere plain tensor ops (autograd, any device, exportable).
"""
import torch

from . import scan_triton

SCAN_ORDERS = ('cross', 'bidirectional', 'unidirectional')
NUM_ROUTES = 4


def _check_order(order):
    if order not in SCAN_ORDERS:
        raise ValueError(f'Unknown scan order {order!r}; choose one of {SCAN_ORDERS}.')


class _TritonCrossScan(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, order, channel_first):
        ctx.geometry = (x.shape[2:] if channel_first else x.shape[1:3], order, channel_first)
        return scan_triton.cross_scan_triton(x, order, channel_first)

    @staticmethod
    def backward(ctx, grad):
        (height, width), order, channel_first = ctx.geometry
        return scan_triton.cross_merge_triton(grad, height, width, order, channel_first), None, \
            None


class _TritonCrossMerge(torch.autograd.Function):

    @staticmethod
    def forward(ctx, routes, height, width, order, channel_first):
        ctx.geometry = (order, channel_first)
        return scan_triton.cross_merge_triton(routes, height, width, order, channel_first)

    @staticmethod
    def backward(ctx, grad):
        order, channel_first = ctx.geometry
        return scan_triton.cross_scan_triton(grad, order, channel_first), None, None, None, None


def _use_triton(tensor, implementation):
    if implementation not in (None, 'torch', 'triton'):
        raise ValueError(f"implementation must be None, 'torch' or 'triton', got "
                         f'{implementation!r}.')
    if implementation is None:
        return tensor.is_cuda and scan_triton.unavailable_reason() is None
    return implementation == 'triton'


def cross_scan(x, order='cross', channel_first=True, implementation=None):
    """(B, C, H, W) — or (B, H, W, C) with channel_first=False — to routes (B, 4, C, H*W).

    ``implementation``: None (Triton on CUDA when available, else tensor ops), 'torch' or 'triton'.
    """
    _check_order(order)
    if x.dim() != 4:
        raise ValueError(f'cross_scan expects a 4D map, got shape {tuple(x.shape)}.')
    if _use_triton(x, implementation):
        return _TritonCrossScan.apply(x, order, channel_first)
    if not channel_first:
        x = x.permute(0, 3, 1, 2)
    rows = x.flatten(2)
    if order == 'unidirectional':
        return torch.stack([rows] * NUM_ROUTES, dim=1)
    if order == 'cross':
        forward = torch.stack([rows, x.transpose(2, 3).flatten(2)], dim=1)
    else:
        forward = torch.stack([rows, rows], dim=1)
    return torch.cat([forward, forward.flip(-1)], dim=1)


def cross_merge(routes, height, width, order='cross', channel_first=True, implementation=None):
    """Routes (B, 4, C, H*W) summed back to (B, C, H, W) — or (B, H, W, C)."""
    _check_order(order)
    batch, num_routes, channels, length = routes.shape
    if num_routes != NUM_ROUTES or length != height * width:
        raise ValueError(f'cross_merge expects routes of shape (B, 4, C, {height * width}), got '
                         f'{tuple(routes.shape)}.')
    if _use_triton(routes, implementation):
        return _TritonCrossMerge.apply(routes, height, width, order, channel_first)
    if order == 'unidirectional':
        merged = routes.sum(1)
    else:
        forward = routes[:, :2] + routes[:, 2:].flip(-1)
        if order == 'cross':
            columns = forward[:, 1].unflatten(-1, (width, height)).transpose(2, 3).flatten(2)
            merged = forward[:, 0] + columns
        else:
            merged = forward.sum(1)
    if channel_first:
        return merged.unflatten(-1, (height, width))
    return merged.transpose(1, 2).unflatten(1, (height, width))
