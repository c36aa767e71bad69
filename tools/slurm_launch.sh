#!/usr/bin/env bash
# tools/slurm_launch.sh PARTITION JOB_NAME SCRIPT [SCRIPT args]: runs tools/SCRIPT under srun
# (--launcher=slurm added). slurm_train.sh and slurm_test.sh are its user-facing forms.
# From the environment:
#   GPUS            tasks in all: one per GPU, or per CPU worker on CPU-only nodes (default 8)
#   GPUS_PER_NODE   GPUs each node gives the job (default 8). 0 means CPU-only nodes: no --gres,
#                   and the tasks start a gloo group. Unset on a partition whose nodes have no GPU
#                   gres, it is 0.
#   TASKS_PER_NODE  default GPUS_PER_NODE; on CPU-only nodes Slurm places the tasks if unset
#   CPUS_PER_TASK   default 5
#   PORT            the master port of the process group (default MASTER_PORT, else 29500)
#   SRUN_ARGS       more srun options; PYTHON: the interpreter (default the project's .venv)
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
GPUS=${GPUS:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
source "$(dirname "${BASH_SOURCE[0]}")/launch_python.sh"

if [ -z "${GPUS_PER_NODE:-}" ]; then
    # %G: the generic resources of the partition's nodes, "(null)" where they have none.
    PARTITION_GRES=$(sinfo -h -p "$PARTITION" -o %G 2>/dev/null)
    if [ -n "$PARTITION_GRES" ] && ! grep -q gpu <<<"$PARTITION_GRES"; then
        GPUS_PER_NODE=0
        echo "$LAUNCHER: partition $PARTITION has no GPU gres: $GPUS CPU tasks with gloo" \
            "(set GPUS_PER_NODE to override)" >&2
    else
        GPUS_PER_NODE=8
    fi
fi
TASK_OPTIONS=(--ntasks="$GPUS")
if [ "$GPUS_PER_NODE" != 0 ]; then
    TASK_OPTIONS+=(--gres=gpu:"$GPUS_PER_NODE"
                   --ntasks-per-node="${TASKS_PER_NODE:-$GPUS_PER_NODE}")
elif [ -n "${TASKS_PER_NODE:-}" ]; then
    TASK_OPTIONS+=(--ntasks-per-node="$TASKS_PER_NODE")
fi
if [ -n "${PORT:-}" ]; then
    export MASTER_PORT=$PORT
fi
export PYTHONPATH="$REPO_ROOT":$PYTHONPATH

set -x
# SRUN_ARGS unquoted: it holds several options.
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${TASK_OPTIONS[@]}" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
    ${SRUN_ARGS} "$PYTHON" -u "$REPO_ROOT/tools/$SCRIPT" "${@:4}" --launcher=slurm
