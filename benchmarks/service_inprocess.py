"""The orchestrator service's raw in-process rate (no gRPC), and ``status`` at 100k individuals.

    .venv/bin/python benchmarks/service_inprocess.py --json [--db URL] [--evaluations N] [--threads K]

Each client thread loops ``report(..., lease_next=True)`` with an instant synthetic evaluation, so the
figure is the ceiling the store and service put under the gRPC server. ``status_ms_at_100k`` times
``status()`` on an experiment whose 100,000 individuals are bulk-inserted into a SQLite file.
``per_evaluation`` counts what the store sends per ``report(lease_next=True)`` in the steady state (one
thread): round trips on PostgreSQL, statements on SQLite (``tests/roundtrips.py``). ``load_average``: the
machine's 1-, 5- and 15-minute load at the start and the end (the rates move with it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import db
from domain import Lease, Metrics, NoWork, WorkerInfo
from orchestrator.config import parse_spec
from orchestrator.service import OrchestratorService


def _accuracy(lease: Lease) -> float:
    return (hash(lease.genome_json) % 1000) / 1000.0


def run_clients(url: str, evaluations: int, threads: int) -> dict[str, Any]:
    store = db.open_store(url)
    svc = OrchestratorService(store)
    name = f"bench-{os.getpid()}-{time.time_ns()}"
    svc.create_experiment(parse_spec({"name": name, "space": "nb201", "population": 50, "sample": 10,
                                      "evaluations": evaluations, "seed": 1}))
    latencies: list[float] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        worker = WorkerInfo(f"bench-{i}", "localhost", "synthetic")
        own: list[float] = []
        got: Lease | NoWork | None = svc.lease(worker, name)
        while True:
            if isinstance(got, NoWork):
                if got.done:
                    break
                time.sleep(0.001)
                got = svc.lease(worker, name)
                continue
            assert isinstance(got, Lease)
            t = time.perf_counter()
            got = svc.report(got.individual_id, got.token, worker.worker_id, Metrics(accuracy=_accuracy(got)),
                             lease_next=True)
            own.append(time.perf_counter() - t)
        with lock:
            latencies.extend(own)

    cpu0, t0 = time.process_time(), time.perf_counter()
    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    completed = svc.get_experiment(name).completed
    store.close()
    latencies.sort()
    return {
        "threads": threads,
        "evaluations": completed,
        "evals_per_s": round(completed / wall, 1),
        "cpu_ms_per_eval": round(cpu / completed * 1e3, 3),
        "report_p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "report_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1e3, 3),
    }


def count_per_evaluation(url: str, n: int = 50) -> dict[str, Any]:
    """What the store sends per report that leases the next work, in the steady state (population full)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from roundtrips import counting

    store = db.open_store(url)
    svc = OrchestratorService(store)
    name = f"count-{os.getpid()}-{time.time_ns()}"
    svc.create_experiment(parse_spec({"name": name, "space": "nb201", "population": 50, "sample": 10,
                                      "evaluations": 10 * n + 200, "seed": 1}))
    worker = WorkerInfo("count", "localhost", "synthetic")
    got: Lease | NoWork | None = svc.lease(worker, name)
    for _ in range(100):
        assert isinstance(got, Lease)
        got = svc.report(got.individual_id, got.token, worker.worker_id, Metrics(accuracy=_accuracy(got)), True)
    with counting(store) as count:
        for _ in range(n):
            assert isinstance(got, Lease)
            got = svc.report(got.individual_id, got.token, worker.worker_id, Metrics(accuracy=_accuracy(got)), True)
    store.close()
    return {"kind": count.kind, "per_report_lease_next": round(count.value / n, 2)}


def status_at_scale(n: int = 100_000) -> dict[str, Any]:
    """Bulk-insert an experiment of ``n`` completed individuals (through the store's schema), time status()."""
    import random
    import sqlite3

    import spaces
    from genome.base import canonical_json

    tmp = Path(tempfile.mkdtemp(prefix="amoeba-status-"))
    url = f"sqlite:///{tmp / 'big.db'}"
    db.upgrade(url)
    svc = OrchestratorService(db.open_store(url))
    svc.create_experiment(parse_spec({"name": "big", "space": "nb201", "population": 100, "sample": 25,
                                      "evaluations": n + 1, "seed": 1}))
    space, rng = spaces.get("nb201"), random.Random(0)
    rows, best = [], -1.0
    for k in range(n):
        g = space.sample(rng)
        fit = rng.random()
        improved = fit > best
        best = max(best, fit)
        rows.append((1, k, canonical_json(g.to_json()), g.fingerprint, None, "random", k, "completed", 1, "w", None,
                     None, fit, fit, 1.0, 10, 10, 1.0, 0.0, None, None, k, k >= n - 100, improved, float(k),
                     float(k), float(k) + 1.0))
    with sqlite3.connect(tmp / "big.db") as conn:
        conn.executemany(
            "INSERT INTO individuals (experiment_id, proposal_seq, genome_json, fingerprint, parent_seq, mutation, "
            "training_seed, state, attempts, lease_owner, lease_token, lease_deadline, fitness, accuracy, latency_ms, "
            "params, mult_adds, train_seconds, compile_seconds, fits_on_chip, failure_reason, completion_rank, "
            "in_population, improved, created_at, leased_at, completed_at) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO events (experiment_id, seq, kind, at, individual_id, proposal_seq, data_json) "
                         "VALUES (1, ?, 'completed', ?, ?, ?, '{}')", [(k + 2, float(k), k + 1, k) for k in range(n)])
        best_id = conn.execute("SELECT id, fitness FROM individuals ORDER BY fitness DESC LIMIT 1").fetchone()
        conn.execute("UPDATE experiments SET completed = ?, proposals = ?, event_seq = ?, best_individual_id = ?, "
                     "best_fitness = ?", (n, n, n + 1, best_id[0], best_id[1]))
    svc.status("big")  # warm the per-experiment caches, as a running server has them
    times = []
    for _ in range(5):
        t = time.perf_counter()
        svc.status("big")
        times.append(time.perf_counter() - t)
    svc.store.close()
    return {"individuals": n, "status_ms": round(statistics.median(times) * 1e3, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--evaluations", type=int, default=3000)
    parser.add_argument("--threads", default="1,16", help="comma-separated client thread counts")
    parser.add_argument("--skip-status", action="store_true")
    parser.add_argument("--status-individuals", type=int, default=100_000,
                        help="individuals of the status() experiment (default 100,000)")
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args()
    url = args.db
    if url is None:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='amoeba-bench-')) / 'bench.db'}"
    if url != db.MEMORY_URL:
        db.upgrade(url)
    doc: dict[str, Any] = {"database": url.split("://", 1)[0], "runs": [], "date": time.strftime("%Y-%m-%d %H:%M"),
                           "load_average": {"start": [round(x, 2) for x in os.getloadavg()]}}
    for k in (int(x) for x in args.threads.split(",")):
        doc["runs"].append(run_clients(url, args.evaluations, k))
    doc["per_evaluation"] = count_per_evaluation(url)
    doc["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    if not args.skip_status:
        doc["status_at_100k"] = status_at_scale(args.status_individuals)
    if args.json:
        print(json.dumps(doc))
        return
    for r in doc["runs"]:
        print(f"{doc['database']}: {r['threads']:>2} threads  {r['evals_per_s']:>8.1f} evals/s  "
              f"{r['cpu_ms_per_eval']:.3f} ms CPU/eval  report p50 {r['report_p50_ms']} ms  p99 {r['report_p99_ms']} ms")
    per = doc["per_evaluation"]
    print(f"{doc['database']}: {per['per_report_lease_next']} {per['kind']} per report(lease_next=True); load average "
          f"{doc['load_average']['start']} at the start, {doc['load_average']['end']} at the end")
    if "status_at_100k" in doc:
        print(f"status() at {doc['status_at_100k']['individuals']} individuals: {doc['status_at_100k']['status_ms']} ms")


if __name__ == "__main__":
    main()
