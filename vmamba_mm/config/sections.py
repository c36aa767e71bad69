"""Config checks that run before the Runner is built: syntax, --cfg-options values, and keys.

- ``read_config``: ``Config.fromfile`` with a syntax error in the file or in one of its ``_base_``
  files reported as ``path:line: syntax error: ...`` (mmengine reports ``File "<unknown>"``).
- ``check_option_types``: a ``--cfg-options`` value whose kind cannot stand where the config has
  its value (``train_dataloader.batch_size=abc``, a list where a number was) is refused, as are
  paths that mmengine's merge would crash on (into a number, past the end of a list).
- ``check_config_keys``: every key of the hooks, the optimizer wrapper and its optimizer, the
  parameter schedulers, the dataloaders with their samplers and datasets, the loops, ``env_cfg``,
  ``randomness`` and ``log_processor`` is checked against what will read it, and the model's
  components with ``model_checks``; dataloader batch sizes and worker counts are range-checked.

Why the keys need checking here: mmengine hands a config dict to a constructor as keyword
arguments, so a misspelt key fails only when its component is built, and a ``**kwargs`` that only
stores its keys fails later still (CheckpointHook passes its extras to ``Runner.save_checkpoint``
at the end of the first epoch, so ``max_keep_ckpt=3`` costs that epoch). Keys that mmengine reads
with ``dict.get`` (``env_cfg.cudnn_benchmarkk``) are never refused at all. What reads a key is
found, not listed (``accepted_arguments``): the class the config's registries resolve ``type``
to, its signature followed through ``**kwargs`` into the parent classes (or to where the class
sends them, for the few that send them elsewhere), and the keys mmengine's own code reads from
the dict, taken from its source so that they follow the installed version.
"""
import ast
import difflib
import functools
import importlib
import inspect
import numbers
import os.path as osp

from .accepted_arguments import (Accepted, callable_arguments, class_arguments,
                                 function_arguments, keys_read_by)
from .engine import ConfigError
from .model_checks import check_model

# -- syntax ----------------------------------------------------------------------------------


def read_config(path):
    """``Config.fromfile(path)``, after checking the syntax of the file and its ``_base_`` files."""
    from mmengine.config import Config
    _check_syntax(path, chain=())
    return Config.fromfile(path)


def _check_syntax(path, chain):
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f'{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); a config '
                          f'is a Python file.') from exc
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ConfigError(f'{path}:{exc.lineno}: syntax error: {exc.msg}') from exc
    except ValueError as exc:  # Python 3.11 says "source code string cannot contain null bytes"
        raise ConfigError(f'{path}: {exc}; a config is a Python text file.') from exc
    for base in _base_files(tree):
        if '::' in base or '{{' in base:
            continue  # a package's config, or a path mmengine substitutes: mmengine resolves it
        base_path = osp.normpath(osp.join(osp.dirname(path), base))
        if not osp.isfile(base_path):
            raise ConfigError(f'{path}: _base_ file not found: {base_path}')
        if base_path not in chain:  # mmengine itself names an inheritance cycle
            _check_syntax(base_path, chain + (path, ))


def _base_files(tree):
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == '_base_'):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []  # computed at run time; mmengine will say what is wrong with it
            values = [value] if isinstance(value, str) else value
            return [v for v in values if isinstance(v, str)] if isinstance(values,
                                                                           (list, tuple)) else []
    return []


# -- --cfg-options value types -------------------------------------------------------------

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
            raise ConfigError(f'--cfg-options {key}={value!r}: the config has {_kind(current)} '
                              f'there ({_short(current)}) and this is {_kind(value)}; give '
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
            raise ConfigError(f'--cfg-options {key}: {where} is {_kind(node)}, '
                              f'{_short(node)}; it has no keys or items to set.')
    return node


def _kind(value):
    if value is None:
        return 'None'
    if isinstance(value, bool):
        return 'a bool'
    if isinstance(value, numbers.Integral):
        return 'an int'
    if isinstance(value, numbers.Real):
        return 'a float'
    if isinstance(value, str):
        return 'a str'
    if isinstance(value, (list, tuple)):
        return f'a {type(value).__name__}'
    if isinstance(value, dict):
        return 'a dict'
    return f'a {type(value).__name__}'


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


def _short(value, limit=60):
    text = repr(value.to_dict() if hasattr(value, 'to_dict') else value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


# -- the config walk -------------------------------------------------------------------------


class _Scope:
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
                              f'{_short(custom_imports)}.')
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
                              f"({registry_name}){_nearest(type_, known) or '.'}")
        return found

    def component(self, key, cfg, registry_name, default_type=None, supplied=(), extra=()):
        """Check a registry-built component's keys; return its class."""
        _require_dict(key, cfg)
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


def _require_dict(key, value):
    if not isinstance(value, dict):
        given = 'None' if value is None else f'{_kind(value)}, {_short(value)}'
        raise ConfigError(f'{key} must be a dict of settings (set its keys one by one, '
                          f'{key}.NAME=VALUE), got {given}.')


def _nearest(name, candidates):
    close = difflib.get_close_matches(str(name), sorted(map(str, candidates)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ''


def check_keys(key, cfg, accepted, reader):
    """Raise ConfigError for the first key of ``cfg`` that ``reader`` does not read."""
    if accepted.anything:
        return
    for name in cfg:
        if name not in accepted.names:
            hint = _nearest(name, accepted.names) or \
                f' (it reads: {", ".join(sorted(accepted.names))})'
            raise ConfigError(f'{key}.{name}: {reader} has no setting {str(name)!r}{hint}')


def check_config_keys(cfg):
    """Check the keys of every section below against what will read it; raise ConfigError."""
    scope = _Scope(cfg)
    _check_hooks(cfg, scope)
    _check_optim_wrapper(cfg, scope)
    _check_param_schedulers(cfg, scope)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(split) is not None:
            _check_dataloader(split, cfg[split], scope)
    _check_loops(cfg, scope)
    if 'env_cfg' in cfg:
        _check_env_cfg(cfg['env_cfg'])
    _check_runner_dicts(cfg, scope)
    check_model(cfg, scope)


def _check_hooks(cfg, scope):
    from mmengine.runner import Runner
    priority = keys_read_by(Runner.register_hook, 'hook')  # the Runner's, not the hook's
    default_hooks = cfg.get('default_hooks')
    if default_hooks is not None:
        _require_dict('default_hooks', default_hooks)
        for name, hook in default_hooks.items():
            if hook is not None:  # None removes a default hook
                scope.component(f'default_hooks.{name}', hook, 'HOOKS', extra=priority)
    custom_hooks = cfg.get('custom_hooks')
    if custom_hooks is not None:
        if not isinstance(custom_hooks, (list, tuple)):
            raise ConfigError(f'custom_hooks must be a list of hook dicts, got '
                              f'{_kind(custom_hooks)}.')
        for index, hook in enumerate(custom_hooks):
            scope.component(f'custom_hooks.{index}', hook, 'HOOKS', extra=priority)


def _check_optim_wrapper(cfg, scope):
    from mmengine.optim import DefaultOptimWrapperConstructor
    from mmengine.optim.optimizer.builder import build_optim_wrapper
    wrapper = cfg.get('optim_wrapper')
    if wrapper is None:
        return
    _require_dict('optim_wrapper', wrapper)
    constructor = scope.resolve(
        'OPTIM_WRAPPER_CONSTRUCTORS', wrapper.get('constructor', 'DefaultOptimWrapperConstructor'),
        'optim_wrapper.constructor')
    if constructor is not DefaultOptimWrapperConstructor or 'optimizer' not in wrapper:
        return  # another constructor (or several optimizers) reads the rest its own way
    builder_reads = keys_read_by(build_optim_wrapper, 'optim_wrapper_cfg')
    constructor_reads = keys_read_by(DefaultOptimWrapperConstructor, 'self.optim_wrapper_cfg')
    wrapper_cls = scope.resolve('OPTIM_WRAPPERS', wrapper.get('type', 'OptimWrapper'),
                                'optim_wrapper.type')
    accepted = class_arguments(wrapper_cls) | Accepted(builder_reads | constructor_reads)
    check_keys('optim_wrapper', wrapper, accepted | Accepted(frozenset({'_scope_'})),
               wrapper_cls.__name__)
    paramwise = wrapper.get('paramwise_cfg')
    if paramwise is not None:
        _require_dict('optim_wrapper.paramwise_cfg', paramwise)
        reads = keys_read_by(DefaultOptimWrapperConstructor, 'self.paramwise_cfg')
        check_keys('optim_wrapper.paramwise_cfg', paramwise, Accepted(reads),
                   'DefaultOptimWrapperConstructor')
    # The constructor supplies the parameter groups.
    scope.component('optim_wrapper.optimizer', wrapper['optimizer'], 'OPTIMIZERS',
                    supplied={'params'})


def _check_param_schedulers(cfg, scope):
    from mmengine.registry.build_functions import build_scheduler_from_cfg
    schedulers = cfg.get('param_scheduler')
    if schedulers is None:
        return
    builder_reads = keys_read_by(build_scheduler_from_cfg, 'args')
    if (isinstance(schedulers, dict) and 'type' not in schedulers and schedulers
            and all(isinstance(v, (dict, list, tuple)) for v in schedulers.values())):
        groups = schedulers.items()  # one list per optimizer of an OptimWrapperDict
    else:
        groups = [(None, schedulers)]
    for group, entries in groups:
        prefix = 'param_scheduler' if group is None else f'param_scheduler.{group}'
        if isinstance(entries, (list, tuple)):
            keyed = [(f'{prefix}.{index}', entry) for index, entry in enumerate(entries)]
        else:
            keyed = [(prefix, entries)]
        for key, entry in keyed:
            scope.component(key, entry, 'PARAM_SCHEDULERS', supplied={'optimizer'},
                            extra=builder_reads)


def _check_dataloader(key, loader, scope):
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader
    _require_dict(key, loader)
    runner_reads = keys_read_by(Runner.build_dataloader, 'dataloader_cfg')
    accepted = class_arguments(DataLoader) | Accepted(runner_reads)
    check_keys(key, loader, accepted, 'the DataLoader (with mmengine Runner.build_dataloader)')
    _check_loader_counts(key, loader)
    for required in ('dataset', 'sampler'):  # Runner.build_dataloader pops them with no default
        if loader.get(required) is None:
            raise ConfigError(f'{key} has no {required}; add {key}.{required}=dict(type=...).')
    _check_dataset(f'{key}.dataset', loader['dataset'], scope)
    scope.component(f'{key}.sampler', loader['sampler'], 'DATA_SAMPLERS',
                    supplied={'dataset', 'seed'})
    if loader.get('batch_sampler') is not None:
        scope.component(f'{key}.batch_sampler', loader['batch_sampler'], 'DATA_SAMPLERS',
                        supplied={'sampler', 'batch_size'})
    for name, skip in (('collate_fn', 1), ('worker_init_fn', 1)):
        function_cfg = loader.get(name)
        if isinstance(function_cfg, dict):
            # Built as partial(function, **settings) and called with the batch or worker id.
            function = scope.resolve('FUNCTIONS', function_cfg.get('type'), f'{key}.{name}.type')
            accepted = callable_arguments(function, skip=skip) | Accepted(frozenset({'type'}))
            check_keys(f'{key}.{name}', function_cfg, accepted, function.__name__)


def _check_loader_counts(key, loader):
    # torch refuses these only when the Runner builds the DataLoader, with a traceback.
    for name, low, meaning in (('batch_size', 1, 'samples per batch and process'),
                               ('num_workers', 0, 'worker processes; 0 loads in the main one')):
        value = loader.get(name)
        if value is not None and (not isinstance(value, numbers.Integral)
                                  or isinstance(value, bool) or value < low):
            raise ConfigError(f'{key}.{name}: must be an int >= {low} ({meaning}), got '
                              f'{value!r}.')


def _check_dataset(key, dataset, scope):
    scope.component(key, dataset, 'DATASETS')
    # Wrappers (RepeatDataset, ConcatDataset, ...) build the datasets they wrap themselves.
    if isinstance(dataset.get('dataset'), dict):
        _check_dataset(f'{key}.dataset', dataset['dataset'], scope)
    if isinstance(dataset.get('datasets'), (list, tuple)):
        for index, inner in enumerate(dataset['datasets']):
            if isinstance(inner, dict):
                _check_dataset(f'{key}.datasets.{index}', inner, scope)


def _check_loops(cfg, scope):
    from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop, Runner, TestLoop,
                                 ValLoop)
    supplied = {'runner', 'dataloader', 'evaluator'}
    train = cfg.get('train_cfg')
    if train is not None:
        _require_dict('train_cfg', train)
        if 'type' in train:
            if 'by_epoch' in train:
                raise ConfigError('train_cfg has both type and by_epoch; the Runner takes one '
                                  '(by_epoch=True is EpochBasedTrainLoop, False '
                                  'IterBasedTrainLoop).')
            scope.component('train_cfg', train, 'LOOPS', supplied=supplied)
        elif 'by_epoch' not in train:
            raise ConfigError('train_cfg needs by_epoch=True/False or a loop type (e.g. '
                              "type='EpochBasedTrainLoop').")
        else:
            # Runner.build_train_loop's shorthand: by_epoch picks the loop class.
            loop = EpochBasedTrainLoop if train['by_epoch'] else IterBasedTrainLoop
            shorthand = keys_read_by(Runner.build_train_loop, 'loop_cfg')
            accepted = class_arguments(loop) - supplied | Accepted(shorthand)
            check_keys('train_cfg', train, accepted, loop.__name__)
    for key, default in (('val_cfg', ValLoop), ('test_cfg', TestLoop)):
        loop_cfg = cfg.get(key)
        if loop_cfg is None:
            continue
        _require_dict(key, loop_cfg)
        if 'type' in loop_cfg:
            scope.component(key, loop_cfg, 'LOOPS', supplied=supplied)
        else:
            check_keys(key, loop_cfg, class_arguments(default) - supplied, default.__name__)


def _check_env_cfg(env_cfg):
    import torch.distributed
    from mmengine.dist import utils as dist_utils
    from mmengine.runner import Runner
    from mmengine.utils.dl_utils import set_multi_processing
    _require_dict('env_cfg', env_cfg)  # the Runner reads it with .get; None would fail there
    check_keys('env_cfg', env_cfg, Accepted(keys_read_by(Runner.setup_env, 'env_cfg')),
               'Runner.setup_env')
    mp_cfg = env_cfg.get('mp_cfg')
    if mp_cfg is not None:
        _require_dict('env_cfg.mp_cfg', mp_cfg)
        # set_multi_processing(**mp_cfg, distributed=...)
        accepted = function_arguments(set_multi_processing) - {'distributed'}
        check_keys('env_cfg.mp_cfg', mp_cfg, accepted, 'set_multi_processing')
    dist_cfg = env_cfg.get('dist_cfg')
    if dist_cfg is not None:
        _require_dict('env_cfg.dist_cfg', dist_cfg)
        if dist_cfg.get('init_backend', 'torch') != 'torch':
            return  # deepspeed or colossalai take the rest
        # init_dist(launcher, **dist_cfg) passes what its launcher function does not take on to
        # torch.distributed.init_process_group, which gets the backend from it.
        accepted = Accepted()
        for function in (dist_utils.init_dist, dist_utils._init_dist_pytorch,
                         dist_utils._init_dist_slurm, dist_utils._init_dist_mpi):
            accepted |= Accepted(function_arguments(function).names - {'launcher'})
        accepted |= function_arguments(torch.distributed.init_process_group)
        check_keys('env_cfg.dist_cfg', dist_cfg, accepted, 'init_dist / init_process_group')


def _check_runner_dicts(cfg, scope):
    from mmengine.runner import LogProcessor, Runner
    if 'randomness' in cfg:
        randomness = cfg['randomness']
        _require_dict('randomness', randomness)  # Runner.set_randomness(**randomness)
        check_keys('randomness', randomness, function_arguments(Runner.set_randomness, skip=1),
                   'Runner.set_randomness')
    log_processor = cfg.get('log_processor')
    if log_processor is not None:
        _require_dict('log_processor', log_processor)
        if 'type' in log_processor:
            scope.component('log_processor', log_processor, 'LOG_PROCESSORS')
        else:
            check_keys('log_processor', log_processor, class_arguments(LogProcessor),
                       'LogProcessor')
