"""The ``torch`` add_layer_norm: the reference's tensor ops (``F.layer_norm`` after the add), which
are already the export-safe form; a backend name of its own so that a block choosing 'torch'
(and every backend name this operation lacks) runs them."""
from .reference import add_layer_norm_reference as add_layer_norm_torch  # noqa: F401
