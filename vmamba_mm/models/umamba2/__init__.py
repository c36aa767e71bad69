"""U-Mamba2-style segmentation: ``Mamba2Layer`` and the click encodings (torch only); the mmseg
parts (``UMamba2`` backbone, ``UMamba2Head``, ``PromptedEncoderDecoder``, ``SoftDiceLoss``) are in
``.unet``, ``.segmentor`` and ``.losses``, imported where mmseg is installed."""
from .clicks import ClickMaps, ClickPrompt, FourierPositions, pad_clicks
from .mamba2_layer import GatedRMSNorm, Mamba2Layer

__all__ = ['Mamba2Layer', 'GatedRMSNorm', 'ClickPrompt', 'ClickMaps', 'FourierPositions',
           'pad_clicks']
