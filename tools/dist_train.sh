#!/usr/bin/env bash
# tools/dist_train.sh CONFIG GPUS [train.py args]: one process per GPU (per CPU worker on a machine
# without GPUs, where the gloo backend is chosen). Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
# PYTHON: the interpreter (default: the project's .venv, else python; the choice is printed).
exec "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
