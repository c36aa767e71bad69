"""``check_config_keys``: every config section's keys against what will read them, before the
Runner is built.

Every key of the hooks, the optimizer wrapper and its optimizer, the parameter schedulers, the
dataloaders with their samplers and datasets, the loops, ``env_cfg``, ``randomness`` and
``log_processor`` is checked against what will read it, and the model's components with
``model_checks``; dataloader batch sizes and worker counts are range-checked.

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
import numbers

from .accepted_arguments import (Accepted, callable_arguments, class_arguments,
                                 function_arguments, keys_read_by)
from .describe import kind_of
from .errors import ConfigError
from .keys import Scope, check_keys, require_dict
from .model_checks import check_model


def check_config_keys(cfg):
    """Check the keys of every section below against what will read it; raise ConfigError."""
    scope = Scope(cfg)
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
        require_dict('default_hooks', default_hooks)
        for name, hook in default_hooks.items():
            if hook is not None:  # None removes a default hook
                scope.component(f'default_hooks.{name}', hook, 'HOOKS', extra=priority)
    custom_hooks = cfg.get('custom_hooks')
    if custom_hooks is not None:
        if not isinstance(custom_hooks, (list, tuple)):
            raise ConfigError(f'custom_hooks must be a list of hook dicts, got '
                              f'{kind_of(custom_hooks)}.')
        for index, hook in enumerate(custom_hooks):
            scope.component(f'custom_hooks.{index}', hook, 'HOOKS', extra=priority)


def _check_optim_wrapper(cfg, scope):
    from mmengine.optim import DefaultOptimWrapperConstructor
    from mmengine.optim.optimizer.builder import build_optim_wrapper
    wrapper = cfg.get('optim_wrapper')
    if wrapper is None:
        return
    require_dict('optim_wrapper', wrapper)
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
        require_dict('optim_wrapper.paramwise_cfg', paramwise)
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
    require_dict(key, loader)
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
        require_dict('train_cfg', train)
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
        require_dict(key, loop_cfg)
        if 'type' in loop_cfg:
            scope.component(key, loop_cfg, 'LOOPS', supplied=supplied)
        else:
            check_keys(key, loop_cfg, class_arguments(default) - supplied, default.__name__)


def _check_env_cfg(env_cfg):
    import torch.distributed
    from mmengine.dist import utils as dist_utils
    from mmengine.runner import Runner
    from mmengine.utils.dl_utils import set_multi_processing
    require_dict('env_cfg', env_cfg)  # the Runner reads it with .get; None would fail there
    check_keys('env_cfg', env_cfg, Accepted(keys_read_by(Runner.setup_env, 'env_cfg')),
               'Runner.setup_env')
    mp_cfg = env_cfg.get('mp_cfg')
    if mp_cfg is not None:
        require_dict('env_cfg.mp_cfg', mp_cfg)
        # set_multi_processing(**mp_cfg, distributed=...)
        accepted = function_arguments(set_multi_processing) - {'distributed'}
        check_keys('env_cfg.mp_cfg', mp_cfg, accepted, 'set_multi_processing')
    dist_cfg = env_cfg.get('dist_cfg')
    if dist_cfg is not None:
        require_dict('env_cfg.dist_cfg', dist_cfg)
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
        require_dict('randomness', randomness)  # Runner.set_randomness(**randomness)
        check_keys('randomness', randomness, function_arguments(Runner.set_randomness, skip=1),
                   'Runner.set_randomness')
    log_processor = cfg.get('log_processor')
    if log_processor is not None:
        require_dict('log_processor', log_processor)
        if 'type' in log_processor:
            scope.component('log_processor', log_processor, 'LOG_PROCESSORS')
        else:
            check_keys('log_processor', log_processor, class_arguments(LogProcessor),
                       'LogProcessor')
