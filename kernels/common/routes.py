"""Route geometry of SS2D's cross-scan, defined once for every backend.

A 2D map of H x W pixels (row-major index ``p = i * W + j``) is read along ``NUM_ROUTES`` routes.
Orders (official ``scans`` codes in brackets, ``ORDER_CODES``):

    'cross'          (0): route 0 row-major, 1 column-major, 2 and 3 the same two reversed;
    'unidirectional' (1): row-major four times;
    'bidirectional'  (2): row-major twice, then row-major reversed twice.

Every order yields ``NUM_ROUTES`` routes, so the four sets of SSM parameters of a block always
apply. ``route_pixels`` is the table the kernels read (the Triton and C++ kernels take it as a
tensor); ``pixel_steps`` is its inverse, which merging the routes back into place reads.
"""
from collections import OrderedDict

import torch

SCAN_ORDERS = ('cross', 'bidirectional', 'unidirectional')
ORDER_CODES = {'cross': 0, 'unidirectional': 1, 'bidirectional': 2}
NUM_ROUTES = 4


def check_order(order):
    if order not in SCAN_ORDERS:
        raise ValueError(f'Unknown scan order {order!r}; choose one of {SCAN_ORDERS}.')


def is_reversed(order, route):
    """Whether the route walks its pixels from the last step to the first."""
    return order != 'unidirectional' and route >= 2


def is_column_major(order, route):
    return order == 'cross' and route % 2 == 1


def route_pixels(order, height, width, device=None):
    """(NUM_ROUTES, H*W) int64: the pixel each route visits at each step.

    Built from ``arange`` with plain tensor ops, so it traces with symbolic H and W.
    """
    check_order(order)
    steps = torch.arange(height * width, device=device)
    rows = []
    for route in range(NUM_ROUTES):
        t = steps.flip(0) if is_reversed(order, route) else steps
        # Step t of a column-major walk is row t % H of column t // H.
        rows.append((t % height) * width + t // height if is_column_major(order, route) else t)
    return torch.stack(rows)


def pixel_steps(order, height, width, device=None):
    """(NUM_ROUTES, H*W) int64: the step at which each route visits each pixel."""
    check_order(order)
    pixels = torch.arange(height * width, device=device)
    rows = []
    for route in range(NUM_ROUTES):
        # Pixel q = i * W + j is step j * H + i of a column-major walk.
        t = (pixels % width) * height + pixels // width if is_column_major(order, route) else \
            pixels
        rows.append(height * width - 1 - t if is_reversed(order, route) else t)
    return torch.stack(rows)


# Detection inputs change size from image to image: keep the recent tables only.
_MAX_TABLES = 64
_TABLES = OrderedDict()


def cached_table(build, order, height, width, device):
    """``build(order, H, W, device)``, kept per (build, order, H, W, device) for the kernels."""
    key = (build.__name__, order, int(height), int(width), torch.device(device))
    table = _TABLES.get(key)
    if table is None:
        # A table first made under torch.inference_mode would be an inference tensor, which a
        # later training step could not save for its backward: made outside it, always.
        with torch.inference_mode(False):
            table = build(order, int(height), int(width), device).contiguous()
        _TABLES[key] = table
        if len(_TABLES) > _MAX_TABLES:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key)
    return table


def route_table(order, height, width, device):
    """``route_pixels`` for the compiled kernels, cached per (order, H, W, device)."""
    return cached_table(route_pixels, order, height, width, device)


def step_table(order, height, width, device):
    """``pixel_steps`` for the compiled kernels, cached the same way."""
    return cached_table(pixel_steps, order, height, width, device)
