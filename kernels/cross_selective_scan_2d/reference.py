"""The ``reference`` cross_selective_scan_2d: the sequential 2D scan (``selective_scan_2d``'s
reference) between tensor-op cross-scan and cross-merge."""
from ..common.composite import composite_2d

cross_selective_scan_2d_reference = composite_2d('reference')
