"""Multiple-instance learning on whole-slide images: aggregators over a slide's patch features
(torch only) and ``MILClassifier`` (an mmengine model; import ``.classifier`` where mmengine is
installed)."""
from .abmil import ABMIL
from .mamba_layer import MambaLayer
from .mambamil import MambaMIL
from .two_d_mambamil import TwoDMambaMIL

__all__ = ['ABMIL', 'MambaMIL', 'TwoDMambaMIL', 'MambaLayer']
