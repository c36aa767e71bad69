"""The ``triton`` cross_selective_scan_2d: the Triton 2D scan between the Triton cross-scan and
cross-merge (there is no fused Triton 2D core)."""
from ..common.composite import composite_2d

cross_selective_scan_2d_triton = composite_2d('triton')
