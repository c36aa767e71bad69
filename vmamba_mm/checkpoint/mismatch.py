"""How a checkpoint's weights differ from a model's state dict, in one line (torch alone): the
words of every loader's error (``fit`` for mmengine's loads and the tools, ``models.pretrained``
for ``create_model`` and a VSSM's ``init_cfg``)."""

NAMES_SHOWN = 3


def _first(names):
    shown = ', '.join(names[:NAMES_SHOWN])
    return shown + (', ...' if len(names) > NAMES_SHOWN else '')


def describe_mismatch(weights, expected, unused_prefixes=(), may_be_missing=()):
    """How ``weights`` differ from ``expected`` in words, the first few keys of each kind ('' when
    they fit): e.g. ``2 missing keys (a, b); 1 keys of another shape (c (8,) in the checkpoint vs
    (4,) in the model)``. Keys under ``unused_prefixes`` may be extra in ``weights``, keys under
    ``may_be_missing`` absent."""
    missing = [key for key in expected
               if key not in weights and not key.startswith(tuple(may_be_missing))]
    unexpected = [key for key in weights
                  if key not in expected and not key.startswith(tuple(unused_prefixes))]
    reshaped = [f'{key} {tuple(weights[key].shape)} in the checkpoint vs '
                f'{tuple(expected[key].shape)} in the model'
                for key in expected if key in weights
                and tuple(getattr(weights[key], 'shape', ())) !=
                tuple(getattr(expected[key], 'shape', ()))]
    return '; '.join(f'{len(names)} {what} ({_first(names)})' for what, names in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('keys of another shape', reshaped)) if names)
