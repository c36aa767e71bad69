#!/usr/bin/env bash
# tools/dist_launch.sh SCRIPT NPROC [SCRIPT args]: runs tools/SCRIPT in NPROC processes on this node
# with torchrun (--launcher pytorch added). dist_train.sh and dist_test.sh are its user-facing forms.
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT from the environment. The interpreter: PYTHON,
# else the project's .venv, else python (tools/launch_python.sh; the choice is printed).
SCRIPT=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
source "$(dirname "${BASH_SOURCE[0]}")/launch_python.sh"

PYTHONPATH="$REPO_ROOT":$PYTHONPATH \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$REPO_ROOT/tools/$SCRIPT" "${@:3}" --launcher pytorch
