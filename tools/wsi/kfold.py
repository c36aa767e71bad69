#!/usr/bin/env python
"""Train and test a WSI config on each fold of its CLAM split files, then write the mean ± std of
accuracy, balanced accuracy, macro F1 and AUC as a Markdown table and a JSON file.

    python tools/wsi/kfold.py CONFIG --folds K --work-dir DIR [--cfg-options KEY=VALUE ...]

Fold k reads ``splits/splits_<k>.csv`` and runs in DIR/fold_<k> through what tools/train.py and
tools/test.py run (config checks, data checks, the Runner); each fold is tested with the model
its schedule ends with. Writes DIR/kfold.md and DIR/kfold.json.
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
from mmengine.config import DictAction

METRICS = (('accuracy/top1', 'accuracy'), ('wsi/balanced_accuracy', 'balanced accuracy'),
           ('wsi/macro_f1', 'macro F1'), ('wsi/auc', 'AUC'))
SPLITS = ('train', 'val', 'test')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--folds', type=int, default=5, help='folds 0..K-1 (default 5)')
    parser.add_argument('--work-dir', required=True, help='one fold_<k> folder each, the table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args(argv)


def run_fold(config, fold, work_dir, cfg_options):
    """The test metrics of the config trained on fold ``fold``."""
    from vmamba_mm.datasets import check_datasets
    from vmamba_mm.engine.runner import build_runner, load_config
    options = dict(cfg_options or {})
    options.update({f'{split}_dataloader.dataset.fold': fold for split in SPLITS})
    cfg = load_config(config, options, osp.join(work_dir, f'fold_{fold}'))
    check_datasets(cfg, splits=tuple(f'{split}_dataloader' for split in SPLITS))
    runner, _ = build_runner(cfg, 'none')
    runner.train()
    return runner.test()


def summarise(per_fold):
    """{metric: {'mean', 'std', 'folds'}}; std over folds with ddof 1 (0 for one fold)."""
    summary = {}
    for key, _ in METRICS:
        values = np.array([metrics[key] for metrics in per_fold], dtype=float)
        summary[key] = dict(mean=float(values.mean()),
                            std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                            folds=values.tolist())
    return summary


def markdown(summary, config, folds):
    lines = [f'{config}, {folds} folds (mean ± std over folds, percent)', '',
             '| ' + ' | '.join(name for _, name in METRICS) + ' |',
             '|' + '---|' * len(METRICS),
             '| ' + ' | '.join(f'{summary[key]["mean"]:.2f} ± {summary[key]["std"]:.2f}'
                               for key, _ in METRICS) + ' |']
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    from vmamba_mm.config import ConfigError
    from vmamba_mm.datasets import DataError
    if args.folds < 1:
        print(f'error: --folds {args.folds}: give at least 1.', file=sys.stderr)
        return 2
    per_fold = []
    try:
        for fold in range(args.folds):
            metrics = run_fold(args.config, fold, args.work_dir, args.cfg_options)
            missing = [key for key, _ in METRICS if key not in metrics]
            if missing:
                raise ConfigError(f'the test of fold {fold} logged no {missing}; the config\'s '
                                  f'test_evaluator needs Accuracy and SlideMetrics.')
            per_fold.append({key: float(metrics[key]) for key, _ in METRICS})
    except (ConfigError, DataError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    summary = summarise(per_fold)
    os.makedirs(args.work_dir, exist_ok=True)
    table = markdown(summary, args.config, args.folds)
    with open(osp.join(args.work_dir, 'kfold.md'), 'w') as handle:
        handle.write(table)
    with open(osp.join(args.work_dir, 'kfold.json'), 'w') as handle:
        json.dump(dict(config=args.config, folds=per_fold, summary=summary), handle, indent=2)
    print(table, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
