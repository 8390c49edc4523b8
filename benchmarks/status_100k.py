"""``amoeba status --db`` on an experiment of 100,000 individuals, against the service's status and a full scan.

    .venv/bin/python benchmarks/status_100k.py [--individuals N] [--db URL] [--keep] [--verify] [--json]

With ``--db`` naming a database that already holds the benchmark's experiment, it is measured as it is.

Builds the database through the store (``StoreTx``: the rows and events a real run writes, in bulk
transactions of 5,000 individuals): a real aging-evolution run over NAS-Bench-201 (P=100, S=25), each
child's accuracy looked up in the shipped table and a made-up latency, so the front, the top K and
``replay --verify`` see real data. Then times, on the same database:

- ``cli_status_json_s``: wall time of ``amoeba status --db URL --json`` as a process (what the user waits),
  next to ``cli_startup_s``, the same interpreter running ``amoeba status --help`` (start-up alone), each
  also as CPU seconds (``*_cpu_s``: what a busy machine cannot inflate);
- ``readmodel_status_ms``: the read-only read model's status document (ours, in-process);
- ``service_status_ms``: the service's status (what a server answers), the peer;
- ``full_scan_status_ms``: the naive way, reading every individual and deriving the document in Python.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import db
from db.repository import EventRecord, NewIndividual
from evolution import Member, rng_for
from genome.base import canonical_json
from orchestrator.config import experiment_context, parse_spec, spec_to_dict
from orchestrator.readmodel import ReadModel
from orchestrator.service import OrchestratorService
from tables.nb201 import load_table
from ui.derive import best_so_far, pareto_flags

BATCH = 5000


def build(url: str, n: int, name: str = "big") -> float:
    """An experiment of ``n`` completed individuals written through the store; returns the seconds it took."""
    t0 = time.perf_counter()
    spec = parse_spec({"name": name, "space": "nb201", "population": 100, "sample": 25, "evaluations": n,
                       "seed": 7, "mutation": {"type": "edge_op"}})
    # The orchestrator's own algorithm for the spec (aging, P=100, S=25), so replay --verify re-derives the log.
    _, algorithm, _, _ = experiment_context(spec)
    table = load_table(None)
    store = db.open_store(url)
    t = 1_800_000_000.0
    with store.transaction() as tx:
        exp = tx.add_experiment(name, json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":")), spec.seed, t)
        tx.append_events([EventRecord(exp.id, 1, "experiment_created", t, None, None,
                                      canonical_json({"config": spec_to_dict(spec)}))])
    state = algorithm.initial()
    ids: dict[int, int] = {}
    event_seq, best, best_id = 1, float("-inf"), 0
    for start in range(0, n, BATCH):
        with store.transaction() as tx:
            events: list[EventRecord] = []
            for k in range(start, min(n, start + BATCH)):
                t += 0.05
                child, state = algorithm.propose(state, k, rng_for(spec.seed, k))
                acc = table.get(child.genome, "c10v_valid_acc_12ep") / 100.0
                latency = round(table.get(child.genome, "est_cost_12ep_sec") / 10.0, 3)
                ind = tx.add_individual(NewIndividual(exp.id, k, canonical_json(child.genome.to_json()),
                                                      child.genome.fingerprint, child.parent_seq, child.mutation[:200],
                                                      k, "completed", t, attempts=1))
                ids[k] = ind
                improved = acc > best
                if improved:
                    best, best_id = acc, ind
                before = algorithm.population(state)
                state = algorithm.observe(state, Member(k, child.genome, acc, acc, latency))
                after = algorithm.population(state)
                left = None
                if len(after) == len(before):  # a member left the population (the oldest, aging)
                    kept = {m.seq for m in after}
                    left = next(m for m in before if m.seq not in kept)
                tx.update_individual(ind, {"fitness": acc, "accuracy": acc, "latency_ms": latency, "completion_rank": k,
                                           "in_population": True, "improved": improved, "completed_at": t + 0.04,
                                           "leased_at": t, "train_seconds": 1.0})
                if left is not None:
                    tx.update_individual(ids.pop(left.seq), {"in_population": False})
                events += [
                    EventRecord(exp.id, event_seq + 1, "proposed", t, ind, k, canonical_json(
                        {"fingerprint": child.genome.fingerprint, "parent_seq": child.parent_seq, "mutation": child.mutation})),
                    EventRecord(exp.id, event_seq + 2, "leased", t, ind, k, canonical_json({"worker": f"w{k % 64}", "attempt": 1})),
                    EventRecord(exp.id, event_seq + 3, "completed", t + 0.04, ind, k, canonical_json(
                        {"fitness": acc, "accuracy": acc, "latency_ms": latency})),
                ]
                event_seq += 3
                if k == n - 1:
                    event_seq += 1
                    events.append(EventRecord(exp.id, event_seq, "experiment_done", t + 0.04, None, None,
                                              canonical_json({"completed": n})))
            tx.append_events(events)
            tx.update_experiment(exp.id, {"proposals": min(n, start + BATCH), "completed": min(n, start + BATCH),
                                          "event_seq": event_seq, "best_individual_id": best_id, "best_fitness": best,
                                          "state": "done" if start + BATCH >= n else "running", "updated_at": t})
        for w in range(64):
            with store.transaction() as tx:
                tx.touch_worker(f"w{w}", "bench-host", "table", t, exp.id, None, completed=0)
    store.close()
    return time.perf_counter() - t0


def _median_ms(call: Any, repeat: int = 5) -> float:
    call()  # warm caches (a running server has them)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e3, 2)


def full_scan_status(url: str, name: str) -> dict[str, Any]:
    """The naive status: every individual read and the document derived in Python."""
    with ReadModel(url) as model:
        records = model.records(name)
    done = sorted((r for r in records if r["state"] == "completed"), key=lambda r: r["completion_rank"])
    flags = pareto_flags([(r["accuracy"], r["latency_ms"]) for r in done])
    return {"completed": len(done), "best_so_far": best_so_far((r["completed_at"], r["fitness"]) for r in done),
            "front": sum(flags), "top": sorted(done, key=lambda r: -r["fitness"])[:10]}


def _wall(cmd: list[str], repeat: int = 3) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of a command; CPU time is what a busy machine cannot inflate."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return round(statistics.median(walls), 3), round(statistics.median(cpus), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--individuals", type=int, default=100_000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file in a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the database file and print its path")
    parser.add_argument("--verify", action="store_true", help="also time `amoeba replay --verify` on it")
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='amoeba-status100k-')) / 'status.db'}"
    db.upgrade(url)
    with ReadModel(url) as existing:
        reuse = any(e.name == "big" for e in existing.experiments())
    # A database kept from an earlier run (--keep, then --db URL) is measured again as it is.
    build_s = None if reuse else round(build(url, args.individuals), 1)
    amoeba = [sys.executable, "-m", "cli.main"]
    with ReadModel(url) as model:
        readmodel_ms = _median_ms(lambda: model.status("big"))
        doc = model.status("big")
    service = OrchestratorService(db.open_store(url))
    service_ms = _median_ms(lambda: service.status("big"))
    service.store.close()
    out: dict[str, Any] = {
        "individuals": doc["completed"],
        "database": url.split("://", 1)[0],
        "build_s": build_s,
        "cli_status_json_s": None, "cli_status_json_cpu_s": None, "cli_startup_s": None, "cli_startup_cpu_s": None,
        "readmodel_status_ms": readmodel_ms,
        "service_status_ms": service_ms,
        "full_scan_status_ms": _median_ms(lambda: full_scan_status(url, "big"), repeat=1),
        "status_bytes": len(json.dumps(doc)),
        "front_points": sum(1 for p in doc["pareto"] if p["on_front"]),
    }
    out["cli_status_json_s"], out["cli_status_json_cpu_s"] = _wall([*amoeba, "status", "--db", url, "--json"])
    out["cli_startup_s"], out["cli_startup_cpu_s"] = _wall([*amoeba, "status", "--help"])
    if args.verify:
        out["cli_replay_verify_s"], out["cli_replay_verify_cpu_s"] = _wall(
            [*amoeba, "replay", "--db", url, "--verify", "--json"], repeat=1)
    if args.keep:
        out["url"] = url
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    for key, value in out.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
