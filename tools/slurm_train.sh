#!/usr/bin/env bash
# Training on a slurm cluster with mmengine's slurm launcher:
#   GPUS=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON: see slurm_launch.sh)
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" train.py "$3" --work-dir="$4" \
    --launcher="slurm" "${@:5}"
