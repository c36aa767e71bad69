"""Example inputs of ``cross_selective_scan_2d``: ``cross_selective_scan``'s (the same
contract; see ``common/cases.py``)."""
from ..common.cases import Examples, register_examples
from ..cross_selective_scan.cases import CORES, label, make

register_examples(Examples('cross_selective_scan_2d', shapes=CORES, make=make, label=label))
