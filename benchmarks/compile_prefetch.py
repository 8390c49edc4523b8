"""Compilation off the critical path: one worker training a few new genomes with and without prefetch.

Usage (see the README's "Compilation off the critical path")::

    .venv/bin/python benchmarks/compile_prefetch.py --json
    .venv/bin/python benchmarks/compile_prefetch.py --evaluations 6 --preset tiny --cells 1 --json

Each mode runs the same experiment (NB201 genomes, the same seed, so the same children) through a real
gRPC server on loopback and one in-process worker with the train evaluator on the learnable CIFAR-format
fixture, each with its own cold persistent compilation cache. ``off`` compiles each child when it starts;
``on`` leases the next child while the current one trains and compiles it on another thread, so the
child's own compile is a cache load. Reported per mode: the children's median compile seconds as they
measured them, the median gap between one child's training ending and the next one's starting (what the
accelerator would sit idle for), their median training seconds, and the wall time. On a CPU the
background compile competes with training for the same cores (prefetch is off there by default), so the
gap shrinks while training slows; on a GPU the host's cores are otherwise idle.

JSON schema (stable)::

    {"benchmark": "compile_prefetch", "device": str, "evaluations": int, "preset": str, "cells": int,
     "modes": {"off"|"on": {"compile_s_median": float, "gap_s_median": float, "train_s_median": float,
                            "wall_s": float, "completed": int}},
     "gap_ratio": float}        # off's median gap over on's (how many times shorter prefetch makes it)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--evaluations", type=int, default=4, help="children trained per mode (default 4)")
    p.add_argument("--preset", default="tiny", help="training preset (default tiny)")
    p.add_argument("--cells", type=int, default=1, help="NB201 cells per stage (default 1)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per child (default 1)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def run_mode(prefetch: bool, args: argparse.Namespace, data_dir: Path, cache: Path) -> dict[str, Any]:
    from orchestrator.config import parse_spec
    from orchestrator.server import ServerConfig, start
    from orchestrator.service import open_service
    from protos.client import OrchestratorClient
    from worker.loop import Worker, WorkerConfig
    from worker.training.evaluator import TrainEvaluator

    service = open_service("memory://")
    service.create_experiment(parse_spec({
        "name": "prefetch", "space": "nb201", "population": 2, "sample": 2, "evaluations": args.evaluations,
        "seed": args.seed, "lease_timeout_s": 600,
        "training": {"preset": args.preset, "cells": args.cells, "epochs": args.epochs},
    }))
    server = start(service, ServerConfig(port=0))
    client = OrchestratorClient(server.address)
    try:
        evaluator = TrainEvaluator(str(data_dir), cache_dir=cache, compilation_cache=cache / "jax", download=False,
                                   progress=False)
        started = time.perf_counter()
        Worker(client, evaluator, WorkerConfig(experiment="prefetch", prefetch=prefetch)).run()
        wall = time.perf_counter() - started
        done = sorted(service.list_individuals("prefetch", 1000, "", "completed").individuals,
                      key=lambda i: i.completed_at or 0.0)
    finally:
        client.close()
        server.stop()
        service.store.close()
    # A child's training starts train_seconds before it completes; the gap is from the previous completion.
    gaps = [(b.completed_at or 0.0) - (b.train_seconds or 0.0) - (a.completed_at or 0.0) for a, b in itertools.pairwise(done)]
    return {
        "compile_s_median": round(statistics.median(i.compile_seconds or 0.0 for i in done[1:] or done), 3),
        "gap_s_median": round(statistics.median(gaps), 3) if gaps else None,
        "train_s_median": round(statistics.median(i.train_seconds or 0.0 for i in done), 3),
        "wall_s": round(wall, 2), "completed": len(done),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.evaluations < 2:
        print("compile_prefetch: --evaluations must be >= 2 (a gap needs two children)", file=sys.stderr)
        return 2
    import jax

    from worker.training.fixtures import write_cifar_archive

    with tempfile.TemporaryDirectory(prefix="amoeba-prefetch-") as tmp:
        root = Path(tmp)
        write_cifar_archive(root / "data", per_batch=120, test_size=100)
        modes = {name: run_mode(name == "on", args, root / "data", root / f"cache-{name}") for name in ("off", "on")}
    off, on = modes["off"]["gap_s_median"], modes["on"]["gap_s_median"]
    doc = {"benchmark": "compile_prefetch", "device": jax.devices()[0].device_kind, "evaluations": args.evaluations,
           "preset": args.preset, "cells": args.cells, "modes": modes,
           "gap_ratio": round(off / on, 2) if off and on and on > 0 else None}
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        for name, m in modes.items():
            print(f"prefetch {name}: compile {m['compile_s_median']} s, gap {m['gap_s_median']} s, "
                  f"training {m['train_s_median']} s (medians), wall {m['wall_s']} s, {m['completed']} children")
        print(f"gap off/on: {doc['gap_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
