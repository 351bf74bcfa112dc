#!/usr/bin/env bash
# Testing on a slurm cluster with mmengine's slurm launcher:
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# CHECKPOINT may be 'none' for a training-free model (MaskCLIP w/o RMA).
# (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON: see slurm_launch.sh)
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" test.py "$3" "$4" --launcher="slurm" "${@:5}"
