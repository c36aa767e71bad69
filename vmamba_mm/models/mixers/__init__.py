"""Token mixers: the module a VSS block mixes its tokens with, chosen by the arch's ``mixer``.

A new mixer is one new file here (a ``TokenMixer`` subclass decorated with
``@MIXERS.register('name')``) plus its import line below.
"""
from .base import MIXERS, TokenMixer, build_mixer, parse_mixer_spec
from .ss2d import SS2D
from .ssd import SSD
from .v2m import V2M

__all__ = ['MIXERS', 'TokenMixer', 'build_mixer', 'parse_mixer_spec', 'SS2D', 'SSD', 'V2M']
