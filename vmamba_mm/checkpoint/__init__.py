"""Checkpoint reading and key conversion, with torch alone.

* ``reading``: :func:`safe_load`, a restricted unpickler that never runs code from the file, after
  checking each zip record's CRC-32 (:func:`check_records`);
* ``conversion``: official VMamba keys -> ours (:func:`convert_official_state_dict`,
  :func:`extract_state_dict`, :func:`load_official_state_dict`);
* ``mismatch``: how a checkpoint's weights differ from a model's, in one line
  (:func:`describe_mismatch`), the words of every loader's error;
* ``mmengine_loader``: the loader vmamba-mm installs into mmengine's ``CheckpointLoader``
  (``trusted_load``, ``register_checkpoint_loader``). It needs mmengine and is not imported here:
  ``from vmamba_mm.checkpoint.mmengine_loader import ...``;
* ``fit``: the weights of a checkpoint that fit a model, official files converted, or an error
  naming the keys (``fitting_weights``, ``check_checkpoint_fits``, ``load_fitting_checkpoint``),
  and the strict loading it installs into mmengine for models that hold a VSSM
  (``install_strict_loading``); it needs mmengine too:
  ``from vmamba_mm.checkpoint.fit import ...``.
"""
from .conversion import (convert_official_state_dict, extract_state_dict,
                         load_official_state_dict, looks_official)
from .reading import (CheckpointContentError, CheckpointDamagedError, CheckpointReadError,
                      UnsafeCheckpointError, UntrustedObject, safe_load)

__all__ = [
    'UnsafeCheckpointError', 'CheckpointContentError', 'CheckpointReadError',
    'CheckpointDamagedError', 'UntrustedObject',
    'safe_load', 'extract_state_dict', 'load_official_state_dict', 'convert_official_state_dict',
    'looks_official'
]
