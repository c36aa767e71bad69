"""Model config checks before the Runner builds the model, each error naming its config key.

- Keys: every dict under ``model`` (and ``tta_model``) whose ``type`` resolves in the MODELS
  registry to a class is built by ``MODELS.build`` with its keys as constructor arguments, so its
  keys are checked as the hooks' and datasets' are (``model.backbone.drop_path_ratee``). The walk
  goes down only through such dicts and never into ``init_cfg`` or other ``*_cfg`` entries
  (layer specs such as norm_cfg, train_cfg/test_cfg), which their owners read in their own ways.
  A class that builds a part from a type name itself lists it in ``PARTS_BUILT_FROM_MODELS``
  (``MILClassifier``: ``aggregator``), and that part's type must name a MODELS class.
- VSSM settings: a VSSM dict's arch, out_indices, frozen_stages, in_channels and drop_path_rate
  go through the checks VSSM.__init__ runs, before any layer exists
  (``model.backbone.arch.dims: ...``), instead of a traceback from inside the Runner.
"""
import inspect
import re

# VSSM, resolve_arch: the models package's public names; the arch keys and the argument checks
# VSSM.__init__ runs are not exported by it.
from ..models import ARCH_KEYS, VSSM, resolve_arch
from ..models.backbones.arch_checks import (check_drop_path_rate, check_frozen_stages,
                                            check_in_channels, stage_indices)
from .accepted_arguments import Accepted
from .errors import ConfigError
from .keys import check_keys


def check_model(cfg, scope):
    """Check ``cfg.model`` and ``cfg.tta_model`` (which gets the model as ``module``)."""
    for key, supplied in (('model', ()), ('tta_model', {'module'})):
        if isinstance(cfg.get(key), dict):
            _check_component(key, cfg[key], scope, supplied)


def _not_built_from_its_keys(name):
    return isinstance(name, str) and name.endswith('_cfg')


def _models_class(node, scope):
    """The class MODELS.build would make of ``node``, or None when its type does not name one."""
    type_ = node.get('type')
    scope_name = node.get('_scope_')
    if inspect.isclass(type_):
        return type_
    if (not isinstance(type_, str) or not all(part.isidentifier() for part in type_.split('.'))
            or not isinstance(scope_name, (str, type(None)))):
        return None
    found = scope.registry('MODELS', scope_name).get(type_)
    return found if inspect.isclass(found) else None


def _check_component(key, node, scope, supplied=()):
    target = _models_class(node, scope)
    if target is None:
        return
    scope.component(key, node, 'MODELS', supplied=set(supplied))
    if issubclass(target, VSSM):
        check_vssm_settings(key, node)
    # A part the class builds itself from a type name (MILClassifier's aggregator): the walk
    # below skips a dict whose type names nothing, so a misspelt type is named here.
    for name in getattr(target, 'PARTS_BUILT_FROM_MODELS', ()):
        part = node.get(name)
        if isinstance(part, dict):
            scope.resolve('MODELS', part.get('type'), f'{key}.{name}.type', part.get('_scope_'))
    for name, value in node.items():
        if _not_built_from_its_keys(name):
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                where = f'{key}.{name}' if item is value else f'{key}.{name}.{index}'
                _check_component(where, item, scope)


def check_vssm_settings(key, node):
    """Run VSSM.__init__'s argument checks on a config dict; ConfigError naming the key."""
    defaults = inspect.signature(VSSM).parameters

    def setting(name):
        return node.get(name, defaults[name].default)

    arch = setting('arch')
    if isinstance(arch, dict):
        check_keys(f'{key}.arch', arch, Accepted(ARCH_KEYS), 'VSSM arch')
    with _named(lambda message: _arch_key(f'{key}.arch', arch, message)):
        settings = resolve_arch(arch)
    num_stages = len(settings['depths'])
    with _named(lambda message: f'{key}.in_channels'):
        check_in_channels(setting('in_channels'))
    with _named(lambda message: f'{key}.out_indices'):
        stage_indices(setting('out_indices'), num_stages)
    with _named(lambda message: f'{key}.frozen_stages'):
        check_frozen_stages(setting('frozen_stages'), num_stages)
    if setting('drop_path_rate') is not None:  # None: the arch's, checked with the arch
        with _named(lambda message: f'{key}.drop_path_rate'):
            check_drop_path_rate(setting('drop_path_rate'))


class _named:
    """Turn the checks' TypeError/ValueError/KeyError into ConfigError 'KEY: message'."""

    def __init__(self, key_for):
        self.key_for = key_for

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None or not issubclass(exc_type, (TypeError, ValueError, KeyError)) \
                or issubclass(exc_type, ConfigError):
            return False
        message = str(exc.args[0]) if exc.args else str(exc)  # KeyError's str adds quotes
        raise ConfigError(f'{self.key_for(message)}: {message}') from exc


def _arch_key(arch_key, arch, message):
    """The arch entry an arch error is about: the first of the dict's own keys that the message
    names (the checks name the setting they refuse), else the arch itself."""
    if not isinstance(arch, dict):
        return arch_key
    named = []
    for name in arch:
        found = re.search(rf'\b{re.escape(str(name))}\b', message)
        if found:
            named.append((found.start(), name))
    return f'{arch_key}.{min(named)[1]}' if named else arch_key
