"""The ``torch`` cross_selective_scan_2d: ``selective_scan_2d``'s chunked tensor-op scan between
tensor-op cross-scan and cross-merge."""
from ..common.composite import composite_2d

cross_selective_scan_2d_torch = composite_2d('torch')
