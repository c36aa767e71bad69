"""What a model costs without its scans: every SS2D's scan core replaced by its skip term.

``remove_scans(model)`` changes the model's function (it is no longer VMamba), so it is for
timing only: ``benchmark.py --scan-floor`` times a VSSM config both ways, which splits its time
into "the scan" and "everything else". The stand-in is the scan's skip term
``sum_routes(D) * x``, in the scan's output layout and dtype, so that the layers after it get
what they always get. Every real scan computes that and more, so the stand-in's time is a lower
bound for the model with any scan implementation.
"""
import types

import torch


def _skip_term_only(ss2d, x):
    """SS2D.scan's stand-in: (B, D, H, W) -> sum over routes of D times x, in the module's
    layout (channels last unless ``channel_first``)."""
    channels = x.shape[1]
    d_sum = ss2d.Ds.float().view(-1, channels).sum(0)
    if ss2d.channel_first:
        y = x.float() * d_sum.view(channels, 1, 1)
    else:
        y = x.float().permute(0, 2, 3, 1) * d_sum
    return y.to(x.dtype)


def remove_scans(model: torch.nn.Module) -> int:
    """Replace the scan core of every SS2D in ``model`` (in place) by its skip term; returns
    how many were replaced (0 for a model without SS2D, e.g. Swin-T)."""
    from vmamba_mm.models.ss2d import SS2D
    replaced = 0
    for module in model.modules():
        if isinstance(module, SS2D):
            module.scan = types.MethodType(_skip_term_only, module)
            replaced += 1
    return replaced
