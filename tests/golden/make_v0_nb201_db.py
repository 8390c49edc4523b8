"""Write tests/golden/v0_nb201.db with the code of revision e0df414, the last before the plug-in refactor
(typed events, spaces registry): three NB201 experiments whose logs hold every event kind that version wrote.

Not a test: it imports modules that no longer exist. Run it in a checkout of that revision (see README.md).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import sys
from pathlib import Path

from orchestrator.domain import ExperimentSpec, Lease, ReportedMetrics, WorkerInfo

import db
from genome import parse_genome
from orchestrator.fork import ForkRequest, fork_experiment
from orchestrator.service import OrchestratorServiceImpl
from tables.nb201 import load_table

out = Path(sys.argv[1])
out.unlink(missing_ok=True)
url = f"sqlite:///{out}"
db.upgrade(url)
table = load_table(None)


class Clock:
    def __init__(self, start: float = 1_790_000_000.0, step: float = 0.25) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def metrics(lease: Lease, latency: bool = True, over: float | None = None) -> ReportedMetrics:
    g = parse_genome(lease.genome, "nb201")
    acc = table.get(g, "c10v_valid_acc_12ep") / 100.0
    lat = over if over is not None else round(table.get(g, "est_cost_12ep_sec") / 100.0, 3)
    return ReportedMetrics(accuracy=acc, latency_ms=lat if latency else None, params=1000 + lease.proposal_seq,
                           train_seconds=1.5)


clock = Clock()
tokens = (f"{i:032x}" for i in itertools.count(1))
service = OrchestratorServiceImpl(db.open_store(url), clock=clock, token_factory=lambda: next(tokens))
A, B = WorkerInfo("w-a", "host-a", "table"), WorkerInfo("w-b", "host-b", "table")

# 1. "exp": accuracy objective, every incident the old service logs.
service.create_experiment(ExperimentSpec(name="exp", space="nb201", population_size=8, sample_size=3, evaluations=30,
                                         seed=11, mutation={"type": "edge_op"}, lease_timeout_s=5.0, max_attempts=2))
step = 0
lost = 0
while True:
    worker = (A, B)[step % 2]
    got = service.lease(worker, "exp")
    if not isinstance(got, Lease):
        if got.done:
            break
        clock.now += 6.0  # the lost lease expires; the next call requeues (or fails) it
        continue
    step += 1
    if step in (6, 7):  # the same individual is lost twice: expired + requeued, then expired + failed
        lost += 1
        clock.now += 6.0
        continue
    if step == 12:
        service.release(got.individual_id, got.token, worker.worker_id)
        continue
    if step == 15:
        service.fail(got.individual_id, got.token, worker.worker_id, "preempted", retryable=True)
        continue
    if step == 18:
        service.fail(got.individual_id, got.token, worker.worker_id, "out of memory")
        continue
    service.report(got.individual_id, got.token, worker.worker_id, metrics(got, latency=step % 3 != 0))

# 2. "lat": a Pareto objective with a hard latency limit: rejections before training and at the report.
service.create_experiment(ExperimentSpec(name="lat", space="nb201", population_size=5, sample_size=2, evaluations=12,
                                         seed=3, mutation={"type": "edge_op"},
                                         objective={"kind": "pareto", "max_latency_ms": 1.05}, lease_timeout_s=5.0))
step = 0
while True:
    got = service.lease(A, "lat")
    if not isinstance(got, Lease):
        assert got.done, got
        break
    step += 1
    if step == 4:  # a measured latency over the limit: rejected at the report
        service.report(got.individual_id, got.token, A.worker_id, metrics(got, over=1.4))
        continue
    # No measured latency on odd steps: the old service estimates it at the report.
    service.report(got.individual_id, got.token, A.worker_id,
                   metrics(got, latency=step % 2 == 0, over=0.9 if step % 2 == 0 else None))

# 3. "exp-fork": forked from "exp" at its middle event, run part way and left running with work out.
with service.store.transaction() as tx:
    rec = tx.experiment("exp")
    assert rec is not None
    at = rec.event_seq // 2
fork_experiment(service.store, ForkRequest(source="exp", at=at, name="exp-fork", population_size=5, sample_size=2,
                                           evaluations=10, seed=4), clock=clock)
for _ in range(5):
    got = service.lease(A, "exp-fork")
    assert isinstance(got, Lease)
    service.report(got.individual_id, got.token, A.worker_id, metrics(got))
released = service.lease(B, "exp-fork")
assert isinstance(released, Lease)
service.release(released.individual_id, released.token, B.worker_id)
held = service.lease(A, "exp-fork")
assert isinstance(held, Lease) and held.individual_id == released.individual_id
queued_again = service.lease(B, "exp-fork")
assert isinstance(queued_again, Lease)
service.release(queued_again.individual_id, queued_again.token, B.worker_id)
service.store.close()

with sqlite3.connect(out) as conn:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("VACUUM")
    kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    states = dict(conn.execute("SELECT state, count(*) FROM individuals GROUP BY state").fetchall())
print(json.dumps({"kinds": kinds, "states": states, "fork_at": at, "held": [held.individual_id, held.token],
                  "size": out.stat().st_size}))
