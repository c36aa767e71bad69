"""SS2D's scan core: project a 2D map onto four routes, scan each, merge them back.

``cross_selective_scan`` is what a VSS block calls. On a backend with a fused implementation (the
``cpp`` CPU kernel, the ``triton`` GPU kernel) and no gradient needed, it projects the map once in
pixel order and lets the kernel walk the routes in place; otherwise it materialises the routes
with ``cross_scan``, runs ``selective_scan`` on them and merges with ``cross_merge``. Both compute
the same function.
"""
import torch

from .cross_scan import NUM_ROUTES, cross_merge, cross_scan
from .dispatch import log_choice_once, resolve_backend
from .scan_common import needs_grad
from .selective_scan import scan_with


def cross_selective_scan(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, order='cross',
                         channel_first=True, backend=None):
    """Four-route selective scan of a (B, C, H, W) map; returns float32 in the chosen layout.

    x_proj_weight: (4, R + 2N, C) route projections to (delta rank R, B, C);
    dt_projs_weight: (4, C, R); A: (4C, N); D, delta_bias: (4C,). delta gets softplus.
    """
    batch, channels, height, width = x.shape
    length = height * width
    rank, state = dt_projs_weight.shape[-1], A.shape[1]
    chosen, reason = resolve_backend(x.device.type, backend)
    if chosen.fused_cross_scan is not None and not needs_grad(x, x_proj_weight, dt_projs_weight,
                                                               A, D, delta_bias):
        log_choice_once(chosen, reason + ', fused with cross-scan/merge', x.device.type)
        x = x.contiguous()  # one copy if x came channels-last from a conv; the kernel reuses it
        projected = torch.einsum('kcd,bdl->bkcl', x_proj_weight, x.flatten(2))
        dt_low, Bs, Cs = projected.split([rank, state, state], dim=2)
        y = chosen.fused_cross_scan(x, dt_low, dt_projs_weight, A, Bs, Cs, D, delta_bias, order)
        y = y.view(batch, channels, height, width)
        return y if channel_first else y.permute(0, 2, 3, 1)
    log_choice_once(chosen, reason, x.device.type)
    routes = cross_scan(x, order, channel_first=True)  # (B, 4, C, L)
    projected = torch.einsum('bkdl,kcd->bkcl', routes, x_proj_weight)
    dts, Bs, Cs = projected.split([rank, state, state], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, dt_projs_weight)
    ys = scan_with(chosen, routes.reshape(batch, -1, length), dts.reshape(batch, -1, length), A,
                   Bs, Cs, D=D, delta_bias=delta_bias, delta_softplus=True,
                   out_dtype=torch.float32)
    return cross_merge(ys.view(batch, NUM_ROUTES, channels, length), height, width, order,
                       channel_first=channel_first)
