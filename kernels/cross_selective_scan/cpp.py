"""The ``cpp`` cross_selective_scan: SS2D's routes walked in place by one C++ pass.

Inference only in practice (``cross_selective_scan`` takes the composite under autograd, which
needs no recomputation), but a complete operator: see ``fused.py``.
"""
from typing import Optional

import torch
from torch import Tensor

from ..cpu_extension import float32_contiguous, load_extension
from ..selective_scan.cpp import selective_scan_cpp
from .fused import fused_entry, register_fused_operator


@torch.library.custom_op('vmamba::cross_selective_scan_cpp', mutates_args=())
def cross_selective_scan_cpp(x: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor,
                             B: Tensor, C: Tensor, D: Optional[Tensor],
                             delta_bias: Optional[Tensor], pixels: Tensor) -> Tensor:
    """``fused_scan_reference`` in one C++ pass: (B, C, L) float32, delta with softplus."""
    args = [float32_contiguous(t, x) for t in (x, dt_low, dt_weight, A, B, C, D, delta_bias)]
    return load_extension().cross_selective_scan_forward(*args, True, pixels.contiguous())


register_fused_operator(cross_selective_scan_cpp, selective_scan_cpp)
cross_selective_scan_compiled = fused_entry(cross_selective_scan_cpp, 'cpp')
