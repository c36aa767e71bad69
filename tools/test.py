#!/usr/bin/env python
"""Evaluate a checkpoint with any vmamba-mm config (task chosen by the config's default_scope).

The command lives in vmamba_mm.engine.test_command (run ``--help`` for its flags).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from vmamba_mm.engine import run_test_command  # noqa: E402 (after the repository is on the path)


def main(argv=None):
    return run_test_command(argv)


if __name__ == '__main__':
    sys.exit(main())
