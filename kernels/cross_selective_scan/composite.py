"""SS2D's scan core as three operations: cross-scan, selective scan, cross-merge.

``composite(backend)`` is the ``cross_selective_scan`` of any backend, built from that backend's
``cross_scan``, ``selective_scan`` and ``cross_merge``; it is what runs under autograd.
``pixel_major_scan_reference`` computes what the fused kernels compute (the channels-last map,
per-route projections given in pixel order, routes walked through the route table) from a
selective scan, and ``pixel_major_low_rank_reference`` the same with delta formed from its
low-rank projection (the Triton kernel): they are the kernels' test oracles, and the first is the
recomputation the C++ kernel's backward differentiates.
"""
import torch

from ..dispatch import implementation
from ..routes import NUM_ROUTES


def project(x, x_proj_weight, rank, state):
    """Per-route projections of a (B, C, L) sequence: (delta low rank, B, C), in its order."""
    projected = torch.einsum('kcd,bdl->bkcl', x_proj_weight, x)
    return projected.split([rank, state, state], dim=2)


def route_parameters(routes, x_proj_weight, dt_projs_weight, state):
    """The scan's delta, B and C of each route (B, routes, K, L), in the route's own order."""
    projected = torch.einsum('bkdl,kcd->bkcl', routes, x_proj_weight)
    dts, Bs, Cs = projected.split([dt_projs_weight.shape[-1], state, state], dim=2)
    return torch.einsum('bkrl,kdr->bkdl', dts, dt_projs_weight), Bs, Cs


def composite(backend):

    def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order,
                             channel_first):
        # Looked up here, not when built: the three operations may register after this one.
        scan = implementation('cross_scan', backend).fn
        selective_scan = implementation('selective_scan', backend).fn
        merge = implementation('cross_merge', backend).fn
        batch, channels, height, width = x.shape
        length = height * width
        routes = scan(x, order, True)  # (B, routes, C, L)
        dts, Bs, Cs = route_parameters(routes, x_proj_weight, dt_projs_weight, A.shape[1])
        ys = selective_scan(routes.reshape(batch, -1, length), dts.reshape(batch, -1, length),
                            A, Bs, Cs, D=D, delta_bias=delta_bias, delta_softplus=True,
                            out_dtype=torch.float32)
        return merge(ys.view(batch, NUM_ROUTES, channels, length), height, width, order,
                     channel_first)

    return cross_selective_scan


def along_routes(t, pixels):
    """(B, routes, K, L) in pixel order -> each route's rows in its own step order."""
    batch, routes, rows, length = t.shape
    return t.gather(-1, pixels.view(1, routes, 1, length).expand(batch, routes, rows, length))


def pixel_major_scan_reference(x, delta, projected, A, D, delta_bias, pixels, selective_scan):
    """What the channels-last fused kernel returns: (B, H, W, C) float32, routes summed in place.

    x: (B, H, W, C); delta: (routes, B, L, C) before its bias; projected: (B, L, routes, R + 2N),
    each pixel's route projections (delta rank R, then B, then C); all in pixel order.
    """
    batch, height, width, channels = x.shape
    routes, length = pixels.shape
    state = A.shape[1]
    rank = projected.shape[-1] - 2 * state
    u = x.reshape(batch, 1, length, channels).transpose(2, 3)
    u = along_routes(u.expand(batch, routes, channels, length), pixels)
    delta = along_routes(delta.permute(1, 0, 3, 2), pixels)
    Bs, Cs = (along_routes(t.permute(0, 2, 3, 1), pixels)
              for t in projected[..., rank:].split([state, state], dim=-1))
    ys = selective_scan(u.reshape(batch, -1, length), delta.reshape(batch, -1, length), A, Bs, Cs,
                        D, delta_bias, True)
    steps = torch.argsort(pixels, dim=-1)
    y = along_routes(ys.view(batch, routes, channels, length).float(), steps).sum(1)
    return y.transpose(1, 2).reshape(batch, height, width, channels)


def pixel_major_low_rank_reference(x, projected, dt_weight, A, D, delta_bias, pixels,
                                   selective_scan):
    """What the Triton kernel returns: ``pixel_major_scan_reference`` with each route's delta
    formed from the low-rank part of its projections, dt_weight (routes, C, R) @ projected[..., :R].
    """
    rank = dt_weight.shape[2]
    delta = torch.einsum('blkr,kcr->kblc', projected[..., :rank], dt_weight)
    return pixel_major_scan_reference(x, delta, projected, A, D, delta_bias, pixels,
                                      selective_scan)


def pixel_major_projections(x, x_proj_weight):
    """A (B, C, H, W) map as (B, H, W, C) (a view when it is channels-last in memory) and every
    route's projection of every pixel, (B, L, routes, R + 2N), by one GEMM."""
    batch, channels, height, width = x.shape
    pixel_major = x.permute(0, 2, 3, 1).contiguous()
    projected = pixel_major.view(-1, channels) @ x_proj_weight.reshape(-1, channels).t()
    return pixel_major, projected.view(batch, height * width, x_proj_weight.shape[0], -1)
