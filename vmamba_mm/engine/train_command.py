"""tools/train.py: train any vmamba-mm config, classification, detection or segmentation (the
config's default_scope picks the task).

Every problem found before the run (config, data, resume) and every known failure during it (a
checkpoint that does not fit, a non-finite loss, a Slurm environment without its variables) is one
``error: ...`` line on stderr and exit status 2.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from ..checkpoint import CheckpointContentError
from ..checkpoint.fit import CheckpointMismatchError
from ..config import ConfigError
from ..datasets import DataError, check_datasets
from ..models.host_memory import add_release_flag, keep_unless_released
from .dist import SlurmEnvironmentError
from .hooks import NonFiniteLossError, require_checkpoint_fit
from .output_paths import work_dir_problem
from .resume import ResumeError, set_up_resume
from .runner import build_runner, load_config, require_gpu_for_amp, run_reporting_data_errors


def parse_train_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model from a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='auto|PATH',
                        help="resume from PATH, or with 'auto' (or no value) from the latest "
                        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual batch size / '
                        'auto_scale_lr.base_batch_size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config settings, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    add_release_flag(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_train_command(argv=None):
    """Run tools/train.py with ``argv`` (sys.argv[1:] when None); returns the exit status."""
    args = parse_train_args(argv)
    resume_note = None
    try:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        problem = work_dir_problem(cfg, args.work_dir)
        if problem is not None:
            raise ConfigError(problem)
        if args.amp:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        require_gpu_for_amp(cfg, args.amp)
        if args.auto_scale_lr:
            if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
                raise ConfigError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                                  'config')
            cfg.auto_scale_lr.enable = True
        if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
            raise ConfigError(f'checkpoint to resume from not found: {args.resume}')
        check_datasets(cfg, splits=('train_dataloader', 'val_dataloader'))
        # A config may ask for it too (resume=True, with load_from as the path or None for auto).
        requested = args.resume if args.resume is not None else (
            (cfg.get('load_from') or 'auto') if cfg.get('resume') else None)
        if requested is not None:
            resume_note = set_up_resume(cfg, requested)
    except (ConfigError, DataError, ResumeError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if cfg.get('resume'):
        require_checkpoint_fit(cfg)
    try:
        runner, notes = build_runner(cfg, args.launcher)
        notes += [resume_note] if resume_note else []
        return run_reporting_data_errors(runner, 'train', notes,
                                         [keep_unless_released(args.release_freed_memory)])
    except (CheckpointContentError, CheckpointMismatchError, NonFiniteLossError,
            SlurmEnvironmentError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
