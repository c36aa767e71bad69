"""The ``cuda`` cross_selective_scan: the CUDA C++ selective scan (``selective_scan/cuda.py``)
between tensor-op cross-scan and cross-merge; there is no fused CUDA C++ core."""
from ..common.composite import composite

cross_selective_scan_cuda = composite('cuda')
