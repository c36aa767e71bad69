"""Hooks that keep a run from losing its checkpoints or writing poisoned ones.

- ``AtomicCheckpointHook``: mmengine's CheckpointHook with saves that a kill at any instant
  cannot lose (the tools put it in place of ``default_hooks.checkpoint``).
- ``StopOnNonFiniteLossHook``: stops training at the iteration whose loss is NaN or infinite,
  before a checkpoint of those weights is written.
- ``CheckpointFitHook``: refuses a loaded checkpoint whose weights do not fit the model, before
  any of them are copied in (tools/test.py and ``--resume`` add it).
- ``RandomStateHook``: saves the run's random state with each checkpoint and restores it on
  resume, so that a resumed run gives a straight run's weights bit for bit.

``use_run_safety_hooks(cfg)`` makes the first two and the last part of a config.
"""
import math
import multiprocessing
import os.path as osp

import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import BaseLoop, EpochBasedTrainLoop

from .atomic_files import (move_into_place, remove_leftover_temporaries, temporary_path,
                           write_text_atomically)
from .random_state import (STATE_FORMAT, EpochSeededWorkers, capture_process_state,
                           loader_generator_seed, restore_process_state)
from ..checkpoint.fit import fitting_weights

CHECKPOINT_HOOK_TYPES = ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the step and the terms."""


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook, in an order that a kill at any instant leaves resumable.

    mmengine 0.10.7 deletes the oldest checkpoint before writing the new one, writes the new one
    in place and then rewrites ``last_checkpoint`` in place: a kill in between leaves a truncated
    newest file and a ``last_checkpoint`` naming a deleted one. Here each save writes a temporary
    file in the same folder, flushes it to disk and renames it into place; only then is
    ``last_checkpoint`` replaced (the same way), and only after that are the checkpoints beyond
    ``max_keep_ckpts`` (or the previous best one) deleted. The arguments are CheckpointHook's.
    Folders that are not local (object stores) are written as mmengine writes them.
    """

    def before_train(self, runner):
        super().before_train(runner)
        self.atomic = isinstance(getattr(self.file_backend, 'client', self.file_backend),
                                 LocalBackend)
        if not self.atomic:
            runner.logger.warning(f'checkpoints go to {self.out_dir}, which is not a local '
                                  f'folder: they are written in place, without the atomic rename.')
            return
        runner.logger.info('Checkpoints are saved atomically: each to a temporary file, flushed '
                           'and renamed into place, older ones deleted only after that '
                           '(AtomicCheckpointHook in place of CheckpointHook).')
        if is_main_process():
            for path in remove_leftover_temporaries(self.out_dir):
                runner.logger.warning(f'removed {path}, left by a checkpoint save that was '
                                      f'interrupted')

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self.atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        if isinstance(runner, _RunnerSavingAtomically):  # re-saved by _save_best_checkpoint
            runner = runner.unwrapped
        outdated_steps = self._keep_new_checkpoint(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._save_atomically(runner, filename, save_optimizer=self.save_optimizer,
                              save_param_scheduler=self.save_param_scheduler, meta=meta,
                              by_epoch=self.by_epoch, **self.args)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        if not is_main_process():
            return
        write_text_atomically(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in outdated_steps:
            self._remove_checkpoint(
                self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step)))

    def _keep_new_checkpoint(self, runner, step):
        """Count step among the kept checkpoints; return the steps whose files are now outdated.

        The checkpoint being written still lists the outdated steps as kept: if the run is killed
        before their files are deleted, the resumed run's ``before_train`` deletes them.
        """
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []  # a best checkpoint re-saves the step already counted
        kept = [*self.keep_ckpt_ids, step]
        runner.message_hub.update_info('keep_ckpt_ids', kept)
        self.keep_ckpt_ids.append(step)  # the deque's maxlen drops the outdated ones
        return kept[:-self.max_keep_ckpts]

    def _save_atomically(self, runner, filename, **save_kwargs):
        final_path = self.file_backend.join_path(self.out_dir, filename)
        temp_path = temporary_path(final_path)
        runner.save_checkpoint(self.out_dir, osp.basename(temp_path), self.file_client_args,
                               backend_args=self.backend_args, **save_kwargs)
        if is_main_process():  # Runner.save_checkpoint writes on the main process only
            self._move_into_place(temp_path, final_path)

    def _move_into_place(self, temp_path, final_path):
        move_into_place(temp_path, final_path)

    def _remove_checkpoint(self, path):
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed checkpoints are folders
            self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics):
        """CheckpointHook's choice of the best checkpoint, with the new one written atomically
        and the previous one deleted only after that."""
        if not self.atomic:
            return super()._save_best_checkpoint(runner, metrics)
        backend = self.file_backend
        self.file_backend = _RemovalsDeferred(backend)
        try:
            super()._save_best_checkpoint(_RunnerSavingAtomically(runner, self), metrics)
        finally:
            deferred, self.file_backend = self.file_backend.deferred, backend
        current = {getattr(self, 'best_ckpt_path', None),
                   *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for path in deferred:
            if path not in current:
                self._remove_checkpoint(path)


class _RemovalsDeferred:
    """A file backend that records removals instead of doing them."""

    def __init__(self, backend):
        self.backend, self.deferred = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def remove(self, path):
        self.deferred.append(path)

    rmtree = remove


class _RunnerSavingAtomically:
    """The runner, with save_checkpoint going through AtomicCheckpointHook's atomic save."""

    def __init__(self, runner, hook):
        self.unwrapped, self.hook = runner, hook

    def __getattr__(self, name):
        return getattr(self.unwrapped, name)

    def save_checkpoint(self, out_dir, filename, file_client_args=None, **save_kwargs):
        save_kwargs.pop('backend_args', None)  # the hook passes its own
        self.hook._save_atomically(self.unwrapped, filename, **save_kwargs)


class StopOnNonFiniteLossHook(Hook):
    """Stop training at the iteration whose loss is NaN or infinite.

    Runs before EMAHook (ABOVE_NORMAL) folds the step's weights into the average and before
    CheckpointHook (VERY_LOW) could save them, so the last checkpoint holds the last good weights.
    In a distributed run every process stops at the same iteration (a lone process stopping
    would leave the others waiting in the next all-reduce).
    """

    priority = 'HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        terms = {name: float(value) for name, value in (outputs or {}).items()
                 if 'loss' in name and isinstance(value, (torch.Tensor, float, int))}
        bad_here = any(not math.isfinite(value) for value in terms.values())
        bad_anywhere = torch.tensor(float(bad_here))
        all_reduce(bad_anywhere)
        if not bad_anywhere.item():
            return
        shown = ', '.join(f'{name}={value:g}' for name, value in terms.items())
        where = (f'epoch {runner.epoch + 1}, iteration {batch_idx + 1} of the epoch '
                 f'({runner.iter + 1} in all)'
                 if isinstance(runner.train_loop, EpochBasedTrainLoop) else
                 f'iteration {runner.iter + 1}')
        losses = shown if bad_here else f'non-finite on another process (here {shown})'
        raise NonFiniteLossError(
            f'the loss became NaN or infinite at {where}: {losses}. Training stopped before '
            f'these weights were saved; the last good checkpoint is {last_checkpoint(runner)}. '
            f'Lower the learning rate, or check the data and data_preprocessor (mean/std).')


def last_checkpoint(runner):
    pointer = osp.join(runner.work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return 'none (none was saved yet)'
    with open(pointer) as f:
        return f.read().strip()


class CheckpointFitHook(Hook):
    """Refuse a checkpoint that does not fit the model before its weights are loaded; hand
    mmengine the weights as they fit (an official VMamba file converted).

    mmengine loads with strict=False and only logs missing or mis-shaped keys, so a checkpoint of
    another model tests as random weights, or resumes into torch's "different number of
    parameter groups". Runs before EMAHook copies the weights into its average.
    """

    priority = 'VERY_HIGH'

    def __init__(self, unused_prefixes=()):
        self.unused_prefixes = tuple(unused_prefixes)

    def after_load_checkpoint(self, runner, checkpoint):
        weights = fitting_weights(checkpoint, runner.model, runner._load_from or 'the checkpoint',
                                  resuming=runner._resume, unused_prefixes=self.unused_prefixes)
        # mmengine loads checkpoint['state_dict'] next (the whole checkpoint when it has none):
        # the weights as they fit, an official file's keys converted, the unused ones left out.
        if 'state_dict' not in checkpoint:
            checkpoint.clear()
        checkpoint['state_dict'] = weights


class RandomStateHook(Hook):
    """Save every random state of the run with each checkpoint; restore it on resume.

    A resumed epoch-based run then draws the same random numbers as a straight run (drop path,
    flips and other augmentations, in the training process and in dataloader workers), so its
    weights and optimizer state equal the straight run's bit for bit on the same machine.

    - ``before_save_checkpoint`` writes ``checkpoint['random_states']``: per rank, Python's
      ``random``, NumPy's global state, torch's CPU generator, the current CUDA device's
      generator and the train dataloader's generator, as they were when the epoch ended.
    - ``after_load_checkpoint`` (resume only) keeps them; ``before_train`` restores them, after
      everything else the Runner and the other hooks do before the first epoch (weight init,
      mmengine's re-seeding with the checkpoint's seed), so nothing draws from them in between.
    - Validation is kept out of the training stream: the states are put back after each
      validation, which a straight run does between a checkpoint and the next epoch and a
      resumed run does not (the val dataloader's iterator draws from torch's generator).
    - The train dataloader gets its own generator (seeded from the run's seed and rank), so that
      creating its iterator, once per run with persistent workers, does not draw from torch's
      global generator; its workers re-seed themselves each epoch (``EpochSeededWorkers``).
    - The sampler needs nothing: mmengine's DefaultSampler shuffles with seed + epoch, and the
      epoch comes back with the checkpoint's ``meta``.
    """

    # Above CheckpointHook (VERY_LOW, 90): the states are gathered from every rank at the end of
    # an epoch before the checkpoint is written; in before_train, below all the usual hooks.
    priority = 85

    def __init__(self):
        self.resumed_states = None
        self.states_before_val = None
        self.rank_states = None
        self.shared_epoch = multiprocessing.RawValue('q', 0)

    def _loader_generator(self, runner):
        return runner.train_dataloader.generator

    def after_load_checkpoint(self, runner, checkpoint):
        if not runner._resume:
            return
        saved = checkpoint.get('random_states')
        if saved is None or saved.get('format') != STATE_FORMAT:
            runner.logger.warning(
                'the checkpoint holds no random states (written before RandomStateHook, or by '
                'another tool): training resumes with freshly seeded generators, so its results '
                'will not equal a straight run\'s bit for bit.')
            return
        self.resumed_states = saved

    def before_train(self, runner):
        loader = runner.train_dataloader
        rank = get_rank()
        if loader.generator is None:
            loader.generator = torch.Generator()
            loader.generator.manual_seed(loader_generator_seed(runner.seed, rank))
        if loader.num_workers > 0 and not isinstance(loader.worker_init_fn, EpochSeededWorkers):
            loader.worker_init_fn = EpochSeededWorkers(runner.seed, rank, self.shared_epoch,
                                                       previous=loader.worker_init_fn)
        if self.resumed_states is None:
            return
        per_rank = self.resumed_states['ranks']
        if len(per_rank) != get_world_size():
            runner.logger.warning(
                f'the checkpoint holds the random states of {len(per_rank)} processes and this '
                f'run has {get_world_size()}: each process takes those of rank 0, so the run will '
                f'not equal a straight one bit for bit.')
        state = per_rank[rank] if len(per_rank) == get_world_size() else per_rank[0]
        restored = restore_process_state(state, loader.generator)
        runner.logger.info(f'restored the random states saved at the end of epoch '
                           f'{self.resumed_states["epoch"]}: {", ".join(restored)}; dataloader '
                           f'workers are re-seeded from seed, rank, worker id and epoch.')
        self.resumed_states = None

    def before_train_epoch(self, runner):
        self.shared_epoch.value = runner.epoch

    def after_train_epoch(self, runner):
        if get_world_size() > 1:  # only rank 0 writes the checkpoint
            self.rank_states = (runner.epoch, all_gather_object(
                capture_process_state(self._loader_generator(runner))))

    def before_val(self, runner):
        if isinstance(runner._train_loop, BaseLoop):  # validating during training
            self.states_before_val = capture_process_state(self._loader_generator(runner))

    def after_val(self, runner):
        if self.states_before_val is not None:
            restore_process_state(self.states_before_val, self._loader_generator(runner))
            self.states_before_val = None

    def before_save_checkpoint(self, runner, checkpoint):
        if self.rank_states is not None and self.rank_states[0] == runner.epoch:
            per_rank = self.rank_states[1]
        else:  # one process, or a best checkpoint saved during validation: the training states
            per_rank = [self.states_before_val or
                        capture_process_state(self._loader_generator(runner))]
        checkpoint['random_states'] = dict(format=STATE_FORMAT,
                                           epoch=checkpoint['meta'].get('epoch'), ranks=per_rank)


def use_run_safety_hooks(cfg):
    """Put AtomicCheckpointHook and StopOnNonFiniteLossHook into cfg; return notes for the log."""
    notes = []
    checkpoint_hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint_hook is not None and checkpoint_hook.get('type') in CHECKPOINT_HOOK_TYPES:
        checkpoint_hook['type'] = 'AtomicCheckpointHook'
    elif checkpoint_hook is not None and checkpoint_hook.get('type') not in (
            'AtomicCheckpointHook', AtomicCheckpointHook):
        notes.append(f'default_hooks.checkpoint is {checkpoint_hook.get("type")}, not '
                     f'CheckpointHook: its saves are left as they are, not made atomic.')
    add_hook_once(cfg, 'StopOnNonFiniteLossHook')
    add_hook_once(cfg, 'RandomStateHook')
    return notes


def require_checkpoint_fit(cfg, unused_prefixes=()):
    """Make the run refuse a checkpoint whose weights do not fit the model.

    unused_prefixes: checkpoint keys the model is known to leave unused (a branch the tool
    turned off), not counted as unexpected.
    """
    add_hook_once(cfg, 'CheckpointFitHook', unused_prefixes=list(unused_prefixes))


def add_hook_once(cfg, hook_type, **kwargs):
    hooks = cfg.get('custom_hooks') or []
    if not any(hook.get('type') == hook_type for hook in hooks):
        cfg.custom_hooks = [*hooks, dict(type=hook_type, **kwargs)]
