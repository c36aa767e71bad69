"""Checks on ``--cfg-options`` before they are merged into a config.

- ``check_top_level_options``: a new top-level key that nothing reads is refused (the Runner
  ignores it silently).
- ``check_option_types``: a value whose kind cannot stand where the config has its value
  (``train_dataloader.batch_size=abc``, a list where a number was) is refused, as are paths that
  mmengine's merge would crash on (into a number, past the end of a list).

Keys below the top level are checked once merged, by ``check_config_keys`` (``sections``).
"""
import inspect
import numbers

from .describe import kind_of, short_repr
from .errors import ConfigError

# Top-level keys that the tools or mmengine read besides the Runner's own arguments.
TOOL_TOP_LEVEL_KEYS = frozenset({
    'runner_type', 'tta_model', 'tta_pipeline', 'custom_imports', 'log_processor', 'visualizer',
    'default_scope', 'auto_scale_lr', 'resume', 'load_from', 'launcher'})


def top_level_keys_read():
    """Top-level config keys something reads: the Runner's arguments and the tools' own."""
    from mmengine.runner import Runner
    return set(inspect.signature(Runner.__init__).parameters) | TOOL_TOP_LEVEL_KEYS


def check_top_level_options(cfg, options):
    """Reject new top-level --cfg-options keys that nothing reads: the Runner ignores them silently.

    Keys below the top level are checked by check_config_keys (parents must exist, leaves must be
    read by their component).
    """
    for key in options:
        if '.' not in key and key not in cfg and key not in top_level_keys_read():
            raise ConfigError(f'--cfg-options {key}: the config has no top-level {key!r} and '
                              f'nothing reads it; check the spelling (top-level keys: '
                              f'{sorted(cfg.keys())}).')


_MISSING = object()


def check_option_types(cfg, options):
    """Refuse an override that cannot stand where the config has its value.

    Numbers replace numbers (an int where a float was, and the reverse), a bool replaces a bool,
    a list or tuple replaces a list or tuple (or a single value of its items' kind, the usual
    "int or tuple" argument), None replaces anything and anything replaces None or a string
    (strings stand for modes such as 'auto' beside numbers and lists throughout OpenMMLab).
    """
    tree = cfg.to_dict()
    for key in options:
        parts = key.split('.')
        for depth in range(1, len(parts)):
            parent = '.'.join(parts[:depth])
            if parent in options:
                # mmengine would set one inside the other's value, or drop it, by their order.
                raise ConfigError(f'--cfg-options sets both {parent} and {key}, which is inside '
                                  f'it; give one of them.')
    for key, value in options.items():
        current = _value_at(tree, key)
        if current is _MISSING:
            continue
        expected = _expected_kind(current, value)
        if expected:
            raise ConfigError(f'--cfg-options {key}={value!r}: the config has {kind_of(current)} '
                              f'there ({short_repr(current)}) and this is {kind_of(value)}; give '
                              f'{expected}.')


def _value_at(tree, key):
    """The value at a dotted key of a config's dict, _MISSING for a new leaf; ConfigError for a
    parent that does not exist (a typo would add a dead branch) or a path that mmengine's merge
    cannot follow."""
    node = tree
    parts = key.split('.')
    for depth, part in enumerate(parts):
        where = '.'.join(parts[:depth])
        if isinstance(node, dict):
            if part not in node:
                if depth == len(parts) - 1:
                    # A new leaf may be a constructor argument left at its default
                    # (model.backbone.with_cp); the key checks vet it.
                    return _MISSING
                raise ConfigError(f'--cfg-options {key}: there is no {part!r} under '
                                  f'{where or "the top level"} of the config; check the spelling '
                                  f'(keys there: {sorted(node)}).')
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f'--cfg-options {key}: there is no {part!r} under {where}, a '
                                  f'list of {len(node)} items; the next part must be an index '
                                  f'0..{len(node) - 1}.')
            if depth == len(parts) - 1:
                # mmengine merges into a list item as into a dict: only keys inside it work.
                raise ConfigError(f'--cfg-options {key}: mmengine cannot replace a list item '
                                  f'by its index; set a key inside it ({key}.NAME=...) or the '
                                  f'whole list ({where}=[...]).')
            node = node[int(part)]
        else:
            raise ConfigError(f'--cfg-options {key}: {where} is {kind_of(node)}, '
                              f'{short_repr(node)}; it has no keys or items to set.')
    return node




def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _expected_kind(current, value):
    """What may replace ``current``, when ``value`` may not; None when it may."""
    if current is None or value is None or isinstance(current, str):
        return None
    if isinstance(current, bool):
        return None if isinstance(value, bool) else 'True or False'
    if _is_number(current):
        return None if _is_number(value) else 'a number'
    if isinstance(current, (list, tuple)):
        if isinstance(value, (list, tuple)) or not current:
            return None
        if all(_is_number(item) for item in current):
            return None if _is_number(value) else 'a list or tuple [a,b,...] (or one number)'
        if all(isinstance(item, str) for item in current):
            return None if isinstance(value, str) else 'a list or tuple [a,b,...] (or one str)'
        return 'a list or tuple [a,b,...]'
    if isinstance(current, dict):
        return None if isinstance(value, dict) else 'its keys one by one (KEY.NAME=VALUE)'
    return None
