"""The ``torch`` depthwise_conv_silu: the reference's tensor ops (``F.conv2d`` with groups=C, then
SiLU), which are already the fast, autograd- and export-safe form; a backend name of its own so
that a block choosing 'torch' (and every backend name this operation lacks) runs them."""
from .reference import depthwise_conv_silu_reference as depthwise_conv_silu_torch  # noqa: F401
