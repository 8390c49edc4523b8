#!/bin/sh
# Give each worker container on a host its own GPU, then run the given command (normally `amoeba worker ...`).
#
# `docker compose up --scale worker=N` starts N identical replicas, and a device reservation of
# `count: 1` hands every replica the same first GPU. So each replica sees all GPUs and claims the
# first free one with an exclusive flock on a file in a volume the replicas share; the lock is held
# by the worker process itself (fd 9 survives exec) and is released when it exits for any reason.
#
# AMOEBA_GPU_COUNT overrides the number of GPUs (default: the /dev/nvidiaN devices);
# AMOEBA_GPU_LOCK_DIR is where the lock files live (default /data/gpu-locks; one folder per host);
# AMOEBA_WORKERS_PER_GPU=K lets K replicas share each GPU, each held to 0.9/K of its memory
# (XLA_PYTHON_CLIENT_MEM_FRACTION): scale the workers to K x the GPUs of each host.
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
per_gpu="${AMOEBA_WORKERS_PER_GPU:-1}"
case "$per_gpu" in
    ''|*[!0-9]*|0) echo "gpu-worker: error: AMOEBA_WORKERS_PER_GPU must be a positive integer, got '$per_gpu'" >&2; exit 2 ;;
esac
mkdir -p "$lock_dir"
k=0
while [ "$k" -lt "$per_gpu" ]; do
    i=0
    while [ "$i" -lt "$count" ]; do
        exec 9>"$lock_dir/gpu-$i-slot-$k.lock"
        if flock -n 9; then
            echo "gpu-worker: using GPU $i of $count (slot $k of $per_gpu)" >&2
            CUDA_VISIBLE_DEVICES="$i"
            export CUDA_VISIBLE_DEVICES
            if [ "$per_gpu" -gt 1 ]; then
                XLA_PYTHON_CLIENT_MEM_FRACTION="$(awk -v k="$per_gpu" 'BEGIN { printf "%.3f", 0.9 / k }')"
                export XLA_PYTHON_CLIENT_MEM_FRACTION
            fi
            exec "$@"
        fi
        exec 9>&-
        i=$((i + 1))
    done
    k=$((k + 1))
done
echo "gpu-worker: error: all $count GPUs x $per_gpu slots are taken by other workers; scale the workers to at most $((count * per_gpu)) per host" >&2
exit 1
