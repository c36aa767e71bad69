"""tools/test.py: evaluate a checkpoint with any vmamba-mm config (the config's default_scope picks
the task), with ``--tta``, ``--show-dir`` and ``--out``.

A problem found before the run (checkpoint file, config, data) and a known failure during it (a
checkpoint that does not fit the model, a Slurm environment without its variables) is one
``error: ...`` line on stderr and exit status 2.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import ConfigDict, DictAction
from mmengine.evaluator import DumpResults

from ..checkpoint import CheckpointContentError
from ..checkpoint.fit import CheckpointMismatchError
from ..config import ConfigError
from ..datasets import DataError, check_datasets
from ..models.host_memory import add_release_flag, keep_unless_released
from .dist import SlurmEnvironmentError
from .hooks import require_checkpoint_fit
from .output_paths import output_folder_problem, work_dir_problem
from .resume import checkpoint_file_problem
from .runner import build_runner, load_config, run_reporting_data_errors

# Each task's visualisation hook, and how it is told to draw every test image into a folder.
SHOW_DIR_SETTINGS = {
    'mmpretrain': lambda hook, out: hook.update(enable=True, out_dir=out, interval=1),
    'mmdet': lambda hook, out: hook.update(draw=True, test_out_dir=out, interval=1),
    'mmseg': lambda hook, out: hook.update(draw=True, interval=1),
}


def parse_test_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='draw the predictions into images in this folder')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model/tta_pipeline")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    add_release_flag(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_test_command(argv=None):
    """Run tools/test.py with ``argv`` (sys.argv[1:] when None); returns the exit status."""
    args = parse_test_args(argv)
    try:
        if not osp.isfile(args.checkpoint):
            raise ConfigError(f'checkpoint not found: {args.checkpoint}')
        problem = checkpoint_file_problem(args.checkpoint)
        if problem is not None:
            raise ConfigError(f'checkpoint {args.checkpoint} {problem}.')
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        problems = output_problems(cfg, args)
        if problems:
            raise ConfigError(problems[0])
        if args.show_dir:
            show_predictions(cfg, args.show_dir)
        tta_note, unused_weights = (use_test_time_augmentation(cfg, args.config) if args.tta
                                    else (None, ()))
        check_datasets(cfg, splits=('test_dataloader', ))
    except (ConfigError, DataError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    cfg.load_from = args.checkpoint
    require_checkpoint_fit(cfg, unused_weights)
    try:
        runner, notes = build_runner(cfg, args.launcher)
        if args.out:
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
        notes += [tta_note] if tta_note else []
        return run_reporting_data_errors(runner, 'test', notes,
                                         [keep_unless_released(args.release_freed_memory)])
    except (CheckpointContentError, CheckpointMismatchError, SlurmEnvironmentError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2


def output_problems(cfg, args):
    """Why the work_dir, --out or --show-dir cannot be written, found before the evaluation."""
    problems = [work_dir_problem(cfg, args.work_dir)]
    if args.out:
        if osp.isdir(args.out):
            problems.append(f'--out {args.out} is a folder; give a .pkl file path')
        else:
            problems.append(output_folder_problem(osp.dirname(osp.abspath(args.out)),
                                                  f'--out {args.out}'))
    if args.show_dir:
        problems.append(output_folder_problem(args.show_dir, f'--show-dir {args.show_dir}'))
    return [problem for problem in problems if problem is not None]


def show_predictions(cfg, show_dir):
    """Make the task's visualisation hook draw every test image into show_dir."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    scope = cfg.get('default_scope')
    if hook is None or scope not in SHOW_DIR_SETTINGS:
        raise ConfigError(f'--show-dir needs default_hooks.visualization in a config of '
                          f'{sorted(SHOW_DIR_SETTINGS)}')
    SHOW_DIR_SETTINGS[scope](hook, show_dir)
    cfg.setdefault('visualizer', ConfigDict())
    if scope == 'mmseg':
        cfg.visualizer.save_dir = show_dir


def use_test_time_augmentation(cfg, config_path):
    """Wrap the model in the config's tta_model and test through its tta_pipeline.

    Returns a note for the log when the task's TTA can do only part of the test, and the
    prefixes of the checkpoint keys that the model then leaves unused.
    """
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise ConfigError(f'--tta needs {missing} in the config {config_path}')
    note, unused_weights = None, ()
    roi_head = cfg.model.get('roi_head') or {}
    if cfg.tta_model.get('type') == 'DetTTAModel' and roi_head.get('mask_head'):
        # mmdet 3.3's DetTTAModel merges boxes only and asserts on predictions with masks.
        roi_head.mask_head = roi_head.mask_roi_extractor = None
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [
            cfg.test_evaluator]
        for evaluator in evaluators:
            if evaluator.get('type') == 'CocoMetric':
                evaluator.metric = 'bbox'
        unused_weights = ('roi_head.mask_head.', 'roi_head.mask_roi_extractor.')
        note = ('--tta with Mask R-CNN: mmdet merges boxes across views but not masks, so the '
                'mask branch is off and only box mAP is reported; test without --tta for mask '
                'mAP.')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return note, unused_weights
