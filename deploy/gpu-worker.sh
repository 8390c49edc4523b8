#!/bin/sh
# Give each worker container on a host its own GPU, then run the given command (normally `amoeba worker ...`).
#
# `docker compose up --scale worker=N` starts N identical replicas, and a device reservation of
# `count: 1` hands every replica the same first GPU. So each replica sees all GPUs and claims the
# first free one with an exclusive flock on a file in a volume the replicas share; the lock is held
# by the worker process itself (fd 9 survives exec) and is released when it exits for any reason.
#
# AMOEBA_GPU_COUNT overrides the number of GPUs (default: the /dev/nvidiaN devices);
# AMOEBA_GPU_LOCK_DIR is where the lock files live (default /data/gpu-locks; one folder per host).
set -eu

lock_dir="${AMOEBA_GPU_LOCK_DIR:-/data/gpu-locks}"
count="${AMOEBA_GPU_COUNT:-$(ls /dev/nvidia[0-9]* 2>/dev/null | wc -l)}"
if [ "$#" -eq 0 ]; then
    echo "gpu-worker: error: no command given (usage: gpu-worker.sh amoeba worker --server HOST:PORT ...)" >&2
    exit 2
fi
if [ "$count" -lt 1 ]; then
    echo "gpu-worker: error: no NVIDIA GPU is visible (is the NVIDIA Container Toolkit installed?)" >&2
    exit 1
fi
mkdir -p "$lock_dir"
i=0
while [ "$i" -lt "$count" ]; do
    exec 9>"$lock_dir/gpu-$i.lock"
    if flock -n 9; then
        echo "gpu-worker: using GPU $i of $count" >&2
        CUDA_VISIBLE_DEVICES="$i"
        export CUDA_VISIBLE_DEVICES
        exec "$@"
    fi
    exec 9>&-
    i=$((i + 1))
done
echo "gpu-worker: error: all $count GPUs are taken by other workers; scale the workers to at most $count per host" >&2
exit 1
