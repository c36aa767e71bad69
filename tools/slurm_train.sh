#!/usr/bin/env bash
# tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]
# GPUS (default 8), GPUS_PER_NODE (8; 0 or a partition without GPUs: CPU tasks with gloo),
# CPUS_PER_TASK (5), PORT, SRUN_ARGS, PYTHON from the environment; see slurm_launch.sh.
# An empty WORK_DIR means the default one (./work_dirs/<config name>).
exec "$(dirname "$0")/slurm_launch.sh" "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
