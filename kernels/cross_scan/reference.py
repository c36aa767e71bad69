"""The reference cross-scan and cross-merge: the ``torch`` backend's gathers along the route
tables of ``common/routes.py``. A gather is exact and as obvious as a loop over pixels, so the
oracle is that code itself; the route tables it reads are checked against their definition in
tests/kernels/test_cross_scan.py."""
from .torch import cross_merge_gather as cross_merge_reference  # noqa: F401
from .torch import cross_scan_gather as cross_scan_reference  # noqa: F401
