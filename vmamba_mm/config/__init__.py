"""Config checks that run before the Runner is built, each error a ``ConfigError`` naming the key.

- ``syntax``: ``read_config``, with syntax errors in a config or its ``_base_`` files located;
- ``options``: ``--cfg-options`` refused before the merge (unknown top-level keys, values of a
  kind that cannot stand where the config has its value);
- ``keys`` and ``accepted_arguments``: a dict's keys against what will read it;
- ``sections``: ``check_config_keys``, every section of a merged config (hooks, optimizer,
  schedulers, dataloaders, loops, env_cfg, ...), the model's through ``model_checks``.
"""
from .errors import ConfigError
from .options import check_option_types, check_top_level_options
from .sections import check_config_keys
from .syntax import read_config

__all__ = [
    'ConfigError', 'read_config', 'check_option_types', 'check_top_level_options',
    'check_config_keys'
]
