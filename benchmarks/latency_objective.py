"""Does a latency objective steer the search? NB201 runs through the real service, accuracy alone vs latency-aware.

Each run drives ``OrchestratorService`` in-process (lease -> table look-up -> report the accuracy; the
orchestrator priced each child's latency when it proposed it) on an in-memory store, so the proposals,
rejections and population are the orchestrator's own. Prints JSON: per objective, the final population's median latency and accuracy,
children rejected before training, and the best individual. Usage:

    .venv/bin/python benchmarks/latency_objective.py --evaluations 300 --seeds 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import spaces
from db import open_store
from domain import Lease, Metrics, WorkerInfo
from orchestrator.config import experiment_context, parse_spec
from orchestrator.service import OrchestratorService
from tables.nb201 import load_table

OBJECTIVES: dict[str, dict[str, Any]] = {
    "accuracy": {"kind": "accuracy"},
    # MnasNet's hard constraint: fitness = ACC * (LAT / T) ** -1 above T, plus a hard limit checked before training.
    # T and the limit sit at the 35th and 90th percentiles of the 15,625 cells' simulated latencies.
    "latency-constrained": {"kind": "mnas", "target_ms": 0.89, "hard": True, "max_latency_ms": 1.04},
}


def run_one(objective: dict[str, Any], evaluations: int, population: int, sample: int, seed: int) -> dict[str, Any]:
    table = load_table()
    service = OrchestratorService(open_store("memory://"))
    spec = parse_spec({"name": "run", "space": "nb201", "population": population, "sample": sample,
                       "evaluations": evaluations, "seed": seed, "objective": objective})
    service.create_experiment(spec)
    space, _, _, settings = experiment_context(spec)
    worker = WorkerInfo("bench-worker")
    got: Any = service.lease(worker, "run")
    while isinstance(got, Lease):
        genome = space.parse(got.genome_json)
        accuracy = table.get(genome, "c10v_valid_acc_12ep") / 100.0  # type: ignore[arg-type]
        # The orchestrator priced the child with the objective's latency settings when it proposed it.
        if (got.latency_ms, got.fits_on_chip) != space.price(genome, settings):
            raise AssertionError(f"lease {got.individual_id} carries another latency than the simulator's")
        got = service.report(got.individual_id, got.token, worker.worker_id, Metrics(accuracy=accuracy),
                             lease_next=True)
    exp = service.get_experiment("run")
    members = [i for i in service.list_individuals("run", 10_000, "", "completed").individuals if i.in_population]
    best = max(service.list_individuals("run", 10_000, "", "completed").individuals, key=lambda i: i.fitness or 0.0)
    return {
        "completed": exp.completed,
        "rejected_before_training": exp.rejected,
        "population_median_latency_ms": statistics.median(m.latency_ms or 0.0 for m in members),
        "population_median_accuracy": statistics.median(m.accuracy or 0.0 for m in members),
        "best": {"arch": spaces.parse_genome(best.genome_json).to_json().get("arch"), "accuracy": best.accuracy,
                 "latency_ms": best.latency_ms},
    }


def compare(evaluations: int, population: int, sample: int, seeds: int) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {}
    for name, objective in OBJECTIVES.items():
        runs = [run_one(objective, evaluations, population, sample, seed) for seed in range(seeds)]
        out[name] = {
            "objective": objective,
            "median_latency_ms": statistics.fmean(r["population_median_latency_ms"] for r in runs),
            "median_accuracy": statistics.fmean(r["population_median_accuracy"] for r in runs),
            "rejected_before_training": sum(r["rejected_before_training"] for r in runs),
            "runs": runs,
        }
    return {"evaluations": evaluations, "population": population, "sample": sample, "seeds": seeds,
            "objectives": out, "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=300)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--sample", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the full JSON document")
    args = parser.parse_args()
    doc = compare(args.evaluations, args.population, args.sample, args.seeds)
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for name, o in doc["objectives"].items():
        print(f"{name:22s} median latency {o['median_latency_ms']:.3f} ms  median accuracy {o['median_accuracy']:.4f}  "
              f"rejected before training {o['rejected_before_training']}")


if __name__ == "__main__":
    main()
