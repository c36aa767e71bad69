"""The ``cpp`` cross_selective_scan_2d: SS2D's routes scanned as 2D grids by one C++ pass.

As ``cross_selective_scan/cpp.py`` with the 2D scan: the kernel reads the route table and each
route's grid width (``route_widths``). Inference only in practice (under autograd the entry takes
``composite_2d('cpp')``), but a complete operator whose backward recomputes
``fused_scan_2d_reference`` on ``vmamba::selective_scan_2d_cpp`` (see
``cross_selective_scan/fused.py``).
"""
from typing import Optional

import torch
from torch import Tensor

from ..cpu_extension import float32_contiguous
from ..cross_selective_scan.fused import fused_entry, register_fused_operator
from ..routes import cached_table, route_table
from ..selective_scan_2d.cpp import load_extension, selective_scan_2d_cpp
from ..selective_scan_2d.cpp import unavailable_reason  # noqa: F401  (the backend's, re-exported)
from .composite import composite_2d, fused_scan_2d_reference, route_widths


@torch.library.custom_op('vmamba::cross_selective_scan_2d_cpp', mutates_args=())
def cross_selective_scan_2d_cpp(x: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor,
                                B: Tensor, C: Tensor, D: Optional[Tensor],
                                delta_bias: Optional[Tensor], pixels: Tensor,
                                widths: Tensor) -> Tensor:
    """``fused_scan_2d_reference`` in one C++ pass: (B, C, L) float32, delta with softplus."""
    args = [float32_contiguous(t, x) for t in (x, dt_low, dt_weight, A, B, C, D, delta_bias)]
    return load_extension().cross_selective_scan_2d_forward(*args, True, pixels.contiguous(),
                                                            widths.contiguous())


# fused_scan_2d_reference calls its scan as (u, delta, A, B, C, D, delta_bias, True, height,
# width): the custom op's own positional signature.
register_fused_operator(cross_selective_scan_2d_cpp, selective_scan_2d_cpp,
                        reference=fused_scan_2d_reference)


def route_tables_2d(order, height, width, device):
    """The fused 2D kernel's tables: the route table and each route's grid width."""
    return (route_table(order, height, width, device),
            cached_table(route_widths, order, height, width, device))


cross_selective_scan_2d_compiled = fused_entry(cross_selective_scan_2d_cpp,
                                               tracked=composite_2d('cpp'),
                                               tables=route_tables_2d)
