"""Timing of the presentation layer on synthetic experiments: ``python -m ui.benchmark [N]`` prints JSON.

Measures what `amoeba status` and `amoeba replay --export` add on top of reading the database: the
front and best-so-far derivations, rendering one status view, and writing every export artifact.
"""

from __future__ import annotations

import io
import json
import random
import sys
import tempfile
import time
from typing import Any

from rich.console import Console

from evolution.objectives import pareto_flags
from ui.derive import best_so_far
from ui.export import export_experiment
from ui.status import render_plain, render_status


def synthetic_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n completed individuals with random accuracy, latency and parents (plain export records)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        acc = rng.uniform(0.80, 0.95)
        out.append({
            "proposal_seq": i, "fingerprint": f"{rng.getrandbits(64):016x}",
            "parent_seq": None if i < 100 else rng.randrange(i), "mutation": "op", "state": "completed",
            "attempts": 1, "fitness": acc, "accuracy": acc, "latency_ms": rng.uniform(0.5, 5.0),
            "completion_rank": i, "completed_at": 60.0 * i, "genome": {"normal": [[0, 1, i % 8]]},
        })
    return out


def run(n: int) -> dict[str, Any]:
    recs = synthetic_records(n)
    t0 = time.perf_counter()
    flags = pareto_flags([(r["accuracy"], r["latency_ms"]) for r in recs])
    curve = best_so_far([(r["completed_at"], r["fitness"]) for r in recs])
    t_derive = time.perf_counter() - t0
    top = sorted(recs, key=lambda r: -r["fitness"])[:10]
    snapshot = {
        "schema": 1, "experiment": "synthetic", "state": "running", "completed": n, "failed": 0, "rejected": 0,
        "target": 2 * n, "evaluations_per_hour": 60.0, "eta_seconds": 60.0 * n,
        "best": {k: top[0][k] for k in ("fingerprint", "accuracy", "latency_ms", "fitness", "proposal_seq")}
        | {"summary": "synthetic"},
        "population": {"size": 100, "best": 0.95, "median": 0.9, "worst": 0.8, "ages": list(range(100))},
        "best_so_far": curve,
        "pareto": [{"fingerprint": r["fingerprint"], "accuracy": r["accuracy"], "latency_ms": r["latency_ms"],
                    "on_front": f} for r, f in zip(recs, flags, strict=True)],
        "top": [{"proposal_seq": r["proposal_seq"], "fingerprint": r["fingerprint"], "fitness": r["fitness"],
                 "accuracy": r["accuracy"], "latency_ms": r["latency_ms"], "summary": "synthetic",
                 "parent_seq": r["parent_seq"], "age": n - 1 - r["completion_rank"]} for r in top],
        "workers": [{"worker_id": f"w{i}", "host": "h", "alive": True, "lease": i, "last_heartbeat": 0.0,
                     "evaluations": n // 64} for i in range(64)],
    }
    t0 = time.perf_counter()
    Console(file=io.StringIO(), width=120, force_terminal=True).print(render_status(snapshot))
    render_plain(snapshot)
    t_render = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        export_experiment(recs, d, population_size=100, created_at=0.0, name="synthetic")
        t_export = time.perf_counter() - t0
    return {"individuals": n, "pareto_points": n, "workers": 64, "derive_s": round(t_derive, 3),
            "render_status_s": round(t_render, 3), "export_all_s": round(t_export, 2)}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(int(args[0]) if args else 100_000)))


if __name__ == "__main__":
    main()
