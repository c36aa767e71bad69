"""The random state of a training process, as a checkpoint can hold it and a resumed run restore it.

What a run draws random numbers from:

- in the training process: Python's ``random``, NumPy's global generator (mmcv/mmpretrain
  transforms when ``num_workers=0``), torch's CPU generator (drop path, dropout, mmdet's samplers)
  and the current CUDA device's generator;
- the train dataloader's generator, which torch draws each iterator's worker base seed from;
- each dataloader worker's Python, NumPy and torch generators (the transforms when
  ``num_workers > 0``).

The first two are captured and restored (:func:`capture_process_state`,
:func:`restore_process_state`). Worker processes cannot be read back, so instead their state is
made a function of the run: :class:`EpochSeededWorkers` re-seeds every worker from
(seed, rank, worker id, epoch) before the first sample it loads in each epoch, persistent workers
included, and a resumed run's workers start each epoch exactly where a straight run's do.
"""
import random

import numpy as np
import torch
from torch.utils.data import get_worker_info

STATE_FORMAT = 1


def capture_process_state(loader_generator=None):
    """This process's generators as plain values and tensors (loadable with weights_only)."""
    version, mt_words, gauss_next = random.getstate()
    kind, numpy_words, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        'python': [version, list(mt_words), gauss_next],
        'numpy': [kind, torch.from_numpy(numpy_words.astype(np.int64)), int(position),
                  int(has_gauss), float(cached_gaussian)],
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        'train_loader_generator': (loader_generator.get_state()
                                   if loader_generator is not None else None),
    }


def restore_process_state(state, loader_generator=None):
    """Set this process's generators to ``state``; returns the names of those set."""
    version, mt_words, gauss_next = state['python']
    random.setstate((version, tuple(mt_words), gauss_next))
    kind, numpy_words, position, has_gauss, cached_gaussian = state['numpy']
    np.random.set_state((kind, numpy_words.numpy().astype(np.uint32), position, has_gauss,
                         cached_gaussian))
    torch.set_rng_state(state['torch'])
    restored = ['Python random', 'NumPy', 'torch CPU']
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])
        restored.append('CUDA')
    if state.get('train_loader_generator') is not None and loader_generator is not None:
        loader_generator.set_state(state['train_loader_generator'])
        restored.append('train dataloader generator')
    return restored


def seed_words(*numbers, count=4):
    """``count`` 32-bit words mixed from non-negative integers (NumPy's SeedSequence)."""
    return np.random.SeedSequence([n & 0xFFFFFFFFFFFFFFFF for n in numbers]).generate_state(
        count, dtype=np.uint32)


def loader_generator_seed(seed, rank):
    low, high = seed_words(seed, rank, 0xDA7A, count=2)
    return int(low) | int(high) << 32


def seed_this_process(*numbers):
    """Seed Python's random, NumPy's global generator and torch from ``numbers``."""
    words = seed_words(*numbers)
    np.random.seed(words)
    random.seed(int(words[0]) | int(words[1]) << 32)
    torch.manual_seed(int(words[2]) | int(words[3]) << 32)


class EpochSeededWorkers:
    """A dataloader ``worker_init_fn`` after which each worker re-seeds itself from
    (seed, rank, worker id, epoch) before the first sample it loads in each epoch.

    ``shared_epoch`` is a ``multiprocessing`` shared integer the training process sets before each
    epoch's iterator starts (workers are idle then). ``previous`` is the loader's former
    ``worker_init_fn`` (mmengine's seeding, or the config's), still called first.
    """

    def __init__(self, seed, rank, shared_epoch, previous=None):
        self.seed, self.rank, self.shared_epoch, self.previous = seed, rank, shared_epoch, previous

    def __call__(self, worker_id):
        if self.previous is not None:
            self.previous(worker_id)
        dataset = get_worker_info().dataset
        dataset.__class__ = _reseeding_class(type(dataset))
        dataset._epoch_reseeding = _WorkerReseeding(self, worker_id)


class _WorkerReseeding:

    def __init__(self, workers, worker_id):
        self.workers, self.worker_id, self.seeded_epoch = workers, worker_id, None

    def before_sample(self):
        epoch = self.workers.shared_epoch.value
        if epoch != self.seeded_epoch:
            seed_this_process(self.workers.seed, self.workers.rank, self.worker_id, epoch)
            self.seeded_epoch = epoch


def _reseed_then_get_item(self, index):
    self._epoch_reseeding.before_sample()
    return super(type(self), self).__getitem__(index)


def _reseed_then_get_items(self, indices):
    self._epoch_reseeding.before_sample()
    return super(type(self), self).__getitems__(indices)


def _reseeding_class(dataset_class):
    """dataset_class with each sample (or batch) read after the epoch check; the worker's copy of
    the dataset is switched to it (a subclass adding no fields, so the object fits as it is)."""
    if getattr(dataset_class, '_reseeds_each_epoch', False):
        return dataset_class
    members = {'__module__': dataset_class.__module__, '__qualname__': dataset_class.__qualname__,
               '_reseeds_each_epoch': True, '__getitem__': _reseed_then_get_item}
    if hasattr(dataset_class, '__getitems__'):  # torch's fetcher then asks for a batch at once
        members['__getitems__'] = _reseed_then_get_items
    return type(dataset_class.__name__, (dataset_class, ), members)
