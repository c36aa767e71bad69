"""What a model costs without its scans: every mixer's scan core replaced by its skip term.

``remove_scans(model)`` changes the model's function (it is no longer VMamba), so it is for
timing only: ``benchmark.py --scan-floor`` times a VSSM config both ways, which splits its time
into "the scan" and "everything else". The stand-in is the scan's skip term (SS2D's
``sum_routes(D) * x``), in the scan's output layout and dtype, so that the layers after it get
what they always get. Every real scan computes that and more, so the stand-in's time is a lower
bound for the model with any scan implementation.
"""
import torch

from vmamba_mm.models.mixers import TokenMixer


def remove_scans(model: torch.nn.Module) -> int:
    """Replace the scan core of every token mixer in ``model`` (in place) by its skip term
    (``TokenMixer.remove_scan``); returns how many were replaced (0 for a model without one,
    e.g. Swin-T)."""
    replaced = 0
    for module in model.modules():
        if isinstance(module, TokenMixer):
            module.remove_scan()
            replaced += 1
    return replaced
