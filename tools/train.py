#!/usr/bin/env python
"""Train any vmamba-mm config: classification, detection or segmentation (by default_scope).

The command lives in vmamba_mm.engine.train_command (run ``--help`` for its flags).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from vmamba_mm.engine import run_train_command  # noqa: E402 (after the repository is on the path)


def main(argv=None):
    return run_train_command(argv)


if __name__ == '__main__':
    sys.exit(main())
