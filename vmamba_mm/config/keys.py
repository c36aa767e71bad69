"""Key checks: a config dict's keys against what will read them, with types resolved as the Runner
resolves them.

- ``Scope``: resolves ``type`` names through the config's default_scope registries (or another
  scope's) and checks a registry-built component's keys (``Scope.component``);
- ``check_keys``: the first key that its reader does not read is a ConfigError that names it and
  the nearest key the reader has.

What reads a key is found, not listed: ``accepted_arguments``.
"""
import difflib
import functools
import importlib
import inspect

from .accepted_arguments import Accepted, callable_arguments
from .describe import kind_of, short_repr
from .errors import ConfigError


class Scope:
    """Resolves ``type`` names as the Runner will: through the config's default_scope registries
    (children of mmengine's), or another scope's with a ``scope.Type`` name or ``_scope_``."""

    def __init__(self, cfg):
        scope = cfg.get('default_scope') or 'mmengine'
        if not isinstance(scope, str):
            raise ConfigError(f'default_scope must be the name of an OpenMMLab package '
                              f'(mmpretrain, mmdet, mmseg), got {scope!r}.')
        self.scope = scope
        self._import_custom_modules(cfg.get('custom_imports'))
        self.registries(scope)

    @staticmethod
    def _import_custom_modules(custom_imports):
        # The Runner imports these too, later; the registries need them now (vmamba_mm's VSSM,
        # loops, ...), or their types would look unknown.
        if not custom_imports:
            return
        imports = custom_imports.get('imports') if isinstance(custom_imports, dict) else None
        imports = [imports] if isinstance(imports, str) else imports
        if not isinstance(imports, (list, tuple)) or not all(
                isinstance(m, str) and m and not m.startswith('.') for m in imports):
            raise ConfigError(f'custom_imports must be dict(imports=[module names, ...]), got '
                              f'{short_repr(custom_imports)}.')
        for module in imports:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                if custom_imports.get('allow_failed_imports'):
                    continue
                raise ConfigError(f'custom_imports: cannot import {module!r} ({exc}); install '
                                  f'it or remove it from custom_imports.imports.') from exc

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def registries(scope):
        try:
            return importlib.import_module(f'{scope}.registry')
        except ImportError as exc:
            raise ConfigError(f'default_scope {scope!r} is not an installed OpenMMLab package '
                              f'with registries (mmpretrain, mmdet, mmseg, mmengine).') from exc

    def registry(self, name, scope=None):
        import mmengine.registry
        registry = getattr(self.registries(scope or self.scope), name, None)
        # Not `or`: a registry whose modules are not imported yet has len 0.
        return getattr(mmengine.registry, name) if registry is None else registry

    def resolve(self, registry_name, type_, key, scope=None):
        """The class or function ``type_`` names; ConfigError naming ``key`` when none."""
        if inspect.isclass(type_) or inspect.isfunction(type_):
            return type_
        if not isinstance(type_, str) or not all(part.isidentifier()
                                                 for part in type_.split('.')):
            # mmengine's Registry.get fails on '.x' or 'mmdet.' with errors of its own.
            raise ConfigError(f'{key} must be the name of a registered class (Name or '
                              f'scope.Name), got {type_!r}.')
        if scope is not None and not isinstance(scope, str):
            raise ConfigError(f'{key}: _scope_ must be a package name, got {scope!r}.')
        registry = self.registry(registry_name, scope)
        found = registry.get(type_)
        if found is not None and not callable(found):
            # Registry.get falls back to importing a dotted name: 'os.path' is a module.
            raise ConfigError(f'{key}: {type_!r} is {type(found).__name__} {found!r}, not a '
                              f'class or function.')
        if found is None:
            known = set()
            while registry is not None:
                known |= set(registry.module_dict)
                registry = registry.parent
            raise ConfigError(f'{key}: {type_!r} is not registered in {scope or self.scope} '
                              f"({registry_name}){nearest_name(type_, known) or '.'}")
        return found

    def component(self, key, cfg, registry_name, default_type=None, supplied=(), extra=()):
        """Check a registry-built component's keys; return its class."""
        require_dict(key, cfg)
        type_ = cfg.get('type', default_type)
        if type_ is None:
            raise ConfigError(f'{key} has no type; add {key}.type (a registered class name).')
        target = self.resolve(registry_name, type_, f'{key}.type', cfg.get('_scope_'))

        def resolve_for_target(name, inner_type, inner_key):
            return self.resolve(name, inner_type, f'{key}.{inner_key}')

        accepted = callable_arguments(target, cfg, resolve_for_target) - supplied
        accepted |= Accepted(frozenset({'type', '_scope_', *extra}))
        check_keys(key, cfg, accepted, getattr(target, '__name__', str(target)))
        return target


def require_dict(key, value):
    if not isinstance(value, dict):
        given = 'None' if value is None else f'{kind_of(value)}, {short_repr(value)}'
        raise ConfigError(f'{key} must be a dict of settings (set its keys one by one, '
                          f'{key}.NAME=VALUE), got {given}.')


def nearest_name(name, candidates):
    close = difflib.get_close_matches(str(name), sorted(map(str, candidates)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ''


def check_keys(key, cfg, accepted, reader):
    """Raise ConfigError for the first key of ``cfg`` that ``reader`` does not read."""
    if accepted.anything:
        return
    for name in cfg:
        if name not in accepted.names:
            hint = nearest_name(name, accepted.names) or \
                f' (it reads: {", ".join(sorted(accepted.names))})'
            raise ConfigError(f'{key}.{name}: {reader} has no setting {str(name)!r}{hint}')
