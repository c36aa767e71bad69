"""Route geometry, cross-scan/merge against hand-written index maps, round trips and adjointness."""
import pytest
import torch

from vmamba_kernels import (NUM_ROUTES, SCAN_ORDERS, available_backends, cross_merge, cross_scan,
                            cross_selective_scan, pixel_steps, route_pixels)

ODD_SIZES = [(1, 1), (1, 7), (7, 1), (3, 5), (4, 4), (7, 2)]


def expected_routes(x, order):
    # Route k visits the pixels of a (C, H, W) map in this order of (row, col).
    _, _, height, width = x.shape
    rows = [(r, c) for r in range(height) for c in range(width)]
    cols = [(r, c) for c in range(width) for r in range(height)]
    paths = {
        'cross': [rows, cols, rows[::-1], cols[::-1]],
        'bidirectional': [rows, rows, rows[::-1], rows[::-1]],
        'unidirectional': [rows] * 4,
    }[order]
    return torch.stack([torch.stack([x[:, :, r, c] for r, c in path], dim=-1) for path in paths],
                       dim=1)


@pytest.mark.parametrize('order', SCAN_ORDERS)
@pytest.mark.parametrize('height, width', ODD_SIZES)
def test_route_tables_match_index_maps(order, height, width):
    """routes.py, the one definition every kernel reads, against the hand-written walks."""
    pixel_ids = torch.arange(height * width, dtype=torch.float64).view(1, 1, height, width)
    table = route_pixels(order, height, width)
    assert table.shape == (NUM_ROUTES, height * width)
    torch.testing.assert_close(table.double(), expected_routes(pixel_ids, order)[0, :, 0])
    steps = pixel_steps(order, height, width)
    for route in range(NUM_ROUTES):
        assert torch.equal(table[route][steps[route]], torch.arange(height * width))


@pytest.mark.parametrize('order', SCAN_ORDERS)
@pytest.mark.parametrize('height, width', ODD_SIZES)
@pytest.mark.parametrize('channel_first', [True, False])
@pytest.mark.parametrize('backend', available_backends('cross_scan'))
def test_scan_matches_index_maps_and_merge_is_adjoint(order, height, width, channel_first,
                                                      backend):
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    layout = x if channel_first else x.permute(0, 2, 3, 1)
    routes = cross_scan(layout, order, channel_first=channel_first, backend=backend)
    torch.testing.assert_close(routes, expected_routes(x, order))

    # <scan(x), y> == <x, merge(y)>: merge is scan's adjoint, hence its backward.
    y = torch.randn_like(routes)
    merged = cross_merge(y, height, width, order, channel_first=channel_first, backend=backend)
    assert merged.shape == layout.shape
    torch.testing.assert_close((routes * y).sum(), (layout * merged).sum())

    # Merging the routes of x sums four visits of every pixel.
    torch.testing.assert_close(
        cross_merge(routes, height, width, order, channel_first, backend=backend),
        NUM_ROUTES * layout)


@pytest.mark.parametrize('order', SCAN_ORDERS)
def test_gradients(order):
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, order), (x, ))
    y = torch.randn(1, 4, 2, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 3, 4, order), (y, ))


def test_bad_order_and_shape_are_named():
    with pytest.raises(ValueError, match="'diagonal'"):
        cross_scan(torch.zeros(1, 1, 2, 2), 'diagonal')
    with pytest.raises(ValueError, match=r'\(B, 4, C, 6\)'):
        cross_merge(torch.zeros(1, 4, 2, 5), 2, 3)


@pytest.mark.parametrize('order', SCAN_ORDERS)
@pytest.mark.parametrize('state', [1, 3])
@pytest.mark.parametrize('height, width', [(1, 1), (1, 6), (5, 7), (8, 3)])
@pytest.mark.parametrize('channel_first', [True, False])
def test_cross_selective_scan_every_path_against_the_reference(order, state, height, width,
                                                               channel_first):
    """The fused kernels (inference), the autograd paths and the reference agree."""
    gen = torch.Generator().manual_seed(state * 100 + height)
    channels, rank = 6, 2
    x = torch.randn(2, channels, height, width, generator=gen)
    args = (
        torch.randn(4, rank + 2 * state, channels, generator=gen) * 0.5,
        torch.randn(4, channels, rank, generator=gen) * 0.5,
        -torch.rand(4 * channels, state, generator=gen) - 0.1,
        torch.randn(4 * channels, generator=gen),
        torch.randn(4 * channels, generator=gen) * 0.5,
    )
    ref = cross_selective_scan(x, *args, order=order, channel_first=channel_first,
                               backend='reference')
    for backend in [b for b in available_backends('cross_selective_scan') if b != 'reference']:
        with torch.no_grad():
            fused = cross_selective_scan(x, *args, order=order, channel_first=channel_first,
                                         backend=backend)
        leaf = x.clone().requires_grad_()
        tracked = cross_selective_scan(leaf, *args, order=order, channel_first=channel_first,
                                       backend=backend)
        for out in (fused, tracked):
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_a_route_table_first_made_in_inference_mode_serves_training():
    # The tables are cached: one first made under torch.inference_mode must still be a tensor a
    # training step can save for its backward (the fused kernels keep it for theirs).
    from vmamba_kernels.routes import _TABLES
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 7, generator=gen)
    args = (torch.randn(4, 4, 4, generator=gen) * 0.5, torch.randn(4, 4, 2, generator=gen) * 0.5,
            -torch.rand(16, 1, generator=gen) - 0.1, torch.randn(16, generator=gen),
            torch.randn(16, generator=gen))
    for key in [key for key in _TABLES if key[2:4] == (3, 7)]:
        del _TABLES[key]
    for backend in available_backends('cross_selective_scan'):
        with torch.inference_mode():
            cross_selective_scan(x, *args, backend=backend)
        leaf = x.clone().requires_grad_()
        cross_selective_scan(leaf, *args, backend=backend).sum().backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
