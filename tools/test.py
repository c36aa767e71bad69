#!/usr/bin/env python
"""Evaluate a checkpoint with any vmamba-mm config (task chosen by the config's default_scope)."""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

# Each task's visualisation hook, and how it is told to draw every test image into a folder.
SHOW_DIR_SETTINGS = {
    'mmpretrain': lambda hook, out: hook.update(enable=True, out_dir=out, interval=1),
    'mmdet': lambda hook, out: hook.update(draw=True, test_out_dir=out, interval=1),
    'mmseg': lambda hook, out: hook.update(draw=True, interval=1),
}


def parse_args(argv=None):
    from mmengine.config import DictAction
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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import vmamba_mm  # noqa: F401  (registers the models and the checkpoint loader)
    from mmengine.config import ConfigDict
    from mmengine.evaluator import DumpResults
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from vmamba_mm.engine import (ConfigError, check_folder_datasets, init_cpu_distributed,
                                  load_config)
    if not osp.isfile(args.checkpoint):
        print(f'error: checkpoint not found: {args.checkpoint}', file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        check_folder_datasets(cfg, splits=('test_dataloader', ))
    except ConfigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    cfg.load_from = args.checkpoint
    if args.show_dir:
        hook = cfg.get('default_hooks', {}).get('visualization')
        scope = cfg.get('default_scope')
        if hook is None or scope not in SHOW_DIR_SETTINGS:
            print(f'error: --show-dir needs default_hooks.visualization in a config of '
                  f'{sorted(SHOW_DIR_SETTINGS)}', file=sys.stderr)
            return 2
        SHOW_DIR_SETTINGS[scope](hook, args.show_dir)
        cfg.setdefault('visualizer', ConfigDict())
        if scope == 'mmseg':
            cfg.visualizer.save_dir = args.show_dir
    if args.tta:
        missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
        if missing:
            print(f'error: --tta needs {missing} in the config {args.config}', file=sys.stderr)
            return 2
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    init_cpu_distributed(args.launcher)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if args.out:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()
    return 0


if __name__ == '__main__':
    sys.exit(main())
