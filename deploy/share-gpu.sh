#!/bin/sh
# Run AMOEBA_WORKERS_PER_GPU copies (default 1) of the given command on this task's GPU, each held to
# 0.9/K of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION), and wait for them; SIGTERM reaches every copy
# (each releases its lease). Used by slurm-workers.sbatch: small CIFAR children leave a large GPU idle.
set -eu
per_gpu="${AMOEBA_WORKERS_PER_GPU:-1}"
case "$per_gpu" in
    ''|*[!0-9]*|0) echo "share-gpu: error: AMOEBA_WORKERS_PER_GPU must be a positive integer, got '$per_gpu'" >&2; exit 2 ;;
esac
if [ "$#" -eq 0 ]; then
    echo "share-gpu: error: no command given (usage: share-gpu.sh amoeba worker --server HOST:PORT ...)" >&2
    exit 2
fi
if [ "$per_gpu" -eq 1 ]; then
    exec "$@"
fi
XLA_PYTHON_CLIENT_MEM_FRACTION="$(awk -v k="$per_gpu" 'BEGIN { printf "%.3f", 0.9 / k }')"
export XLA_PYTHON_CLIENT_MEM_FRACTION
pids=""
trap 'kill -TERM $pids 2>/dev/null' TERM INT
k=0
while [ "$k" -lt "$per_gpu" ]; do
    "$@" &
    pids="$pids $!"
    k=$((k + 1))
done
status=0
for pid in $pids; do
    wait "$pid" || status=$?
done
exit "$status"
