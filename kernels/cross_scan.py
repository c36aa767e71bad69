"""Cross-scan and cross-merge: a 2D map as four 1D routes for the selective scan, and back.

Orders (official ``scans`` codes 0 / 2 / 1 in brackets):
    'cross'          (0): row-major, column-major, and both reversed;
    'bidirectional'  (2): row-major twice and row-major reversed twice;
    'unidirectional' (1): row-major four times.
Every order yields K = 4 routes, so the four sets of SSM parameters of a block always apply.
``cross_merge`` is the adjoint of ``cross_scan`` (it sums the routes back into place), so each is
the other's backward. Plain tensor ops: autograd, any device, exportable.
"""
import torch

SCAN_ORDERS = ('cross', 'bidirectional', 'unidirectional')
NUM_ROUTES = 4


def _check_order(order):
    if order not in SCAN_ORDERS:
        raise ValueError(f'Unknown scan order {order!r}; choose one of {SCAN_ORDERS}.')


def cross_scan(x, order='cross', channel_first=True):
    """(B, C, H, W) — or (B, H, W, C) with channel_first=False — to routes (B, 4, C, H*W)."""
    _check_order(order)
    if x.dim() != 4:
        raise ValueError(f'cross_scan expects a 4D map, got shape {tuple(x.shape)}.')
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


def cross_merge(routes, height, width, order='cross', channel_first=True):
    """Routes (B, 4, C, H*W) summed back to (B, C, H, W) — or (B, H, W, C)."""
    _check_order(order)
    batch, num_routes, channels, length = routes.shape
    if num_routes != NUM_ROUTES or length != height * width:
        raise ValueError(f'cross_merge expects routes of shape (B, 4, C, {height * width}), got '
                         f'{tuple(routes.shape)}.')
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
