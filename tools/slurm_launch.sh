#!/usr/bin/env bash
# One srun job of a tool with mmengine's slurm launcher (what slurm_train.sh
# and slurm_test.sh run):
#   GPUS=8 bash tools/slurm_launch.sh PARTITION JOB_NAME TOOL.py [tool arguments]
set -x
PARTITION=$1
JOB_NAME=$2
TOOL=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
# PYTHON: the interpreter (default: see misc/find_python.sh)
source "$(dirname "$0")/misc/find_python.sh"

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/${TOOL}" "${@:4}"
