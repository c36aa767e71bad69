"""Running a config: the train and test commands (``tools/train.py``, ``tools/test.py``) and what
they set up around mmengine's Runner.

- ``train_command``, ``test_command``: the tools' flags and error reporting;
- ``runner``: a checked config from the flags, the Runner built for CPU and single-process runs;
- ``hooks``, ``loops``: atomic checkpoints, the stop on a non-finite loss, the refusal of a
  checkpoint that does not fit, the random state saved and restored for an exact resume,
  validation of the raw and the EMA weights;
- ``resume``: which checkpoint ``--resume`` continues from; ``atomic_files``: writes a kill cannot
  tear; ``dist``: distributed runs on machines without GPUs.
"""
from .hooks import (AtomicCheckpointHook, CheckpointFitHook, NonFiniteLossError,
                    RandomStateHook, StopOnNonFiniteLossHook)
from .loops import RawAndEMAValLoop
from .runner import build_runner, load_config
from .test_command import run_test_command
from .train_command import run_train_command

__all__ = [
    'run_train_command', 'run_test_command', 'load_config', 'build_runner', 'AtomicCheckpointHook',
    'CheckpointFitHook', 'StopOnNonFiniteLossHook', 'NonFiniteLossError', 'RawAndEMAValLoop',
    'RandomStateHook'
]
