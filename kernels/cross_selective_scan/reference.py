"""The ``reference`` cross_selective_scan: the sequential selective scan (``selective_scan``'s
reference, one token at a time) between tensor-op cross-scan and cross-merge."""
from ..common.composite import composite

cross_selective_scan_reference = composite('reference')
