"""The V2M stage's cost for ``torch.utils.flop_counter`` (conventions: see
``selective_scan/flops.py``).

The C++ operator is the route kernel, so its rule is the route kernel's
(``common/route_kernel.py``): the selective scan of every orientation's channels over every line,
9 B L (4 C) N plus the D skip, as the sequence form (``torch.py``) counts its ``selective_scan``.
The projections and delta are GEMMs the counter counts itself; the fixed ones of B or C are
counted as operands, as the sequence form counts them.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from ..common.route_kernel import route_scan_flops
from . import cpp  # noqa: F401  (it defines the operator)

register_flop_formula(torch.ops.vmamba.v2m_scan_cpp)(route_scan_flops)
