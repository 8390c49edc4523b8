"""The learned algorithms (rl, guided) through the service on every backend: options refused at create, two
workers reporting out of order, a restart in the middle (the new service refolds the completions: their
``restore`` gives None), the stored population, and replay re-deriving every proposal."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import db
from domain import InvalidArgument, Lease, Metrics, WorkerInfo
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService
from tests import builders
from tests.builders import Clock

pytestmark = pytest.mark.service

W1, W2 = WorkerInfo("w1", "host-a", "table"), WorkerInfo("w2", "host-b", "table")


def accuracy_of(le: Lease) -> float:
    digest = json.dumps(json.loads(le.genome_json), sort_keys=True)
    return (sum(ord(c) * (i + 1) for i, c in enumerate(digest)) % 1000) / 1000.0


def _spec(algorithm: str, options: dict[str, Any] | None = None, evaluations: int = 40) -> Any:
    return builders.spec("exp", population=6, sample=2, evaluations=evaluations, seed=11, algorithm=algorithm,
                         algorithm_options=options or {})


@pytest.mark.parametrize(("algorithm", "options"), [("rl", {"learning_rate": 0.05}),
                                                    ("rl", {"policy": "lstm", "hidden": 8, "embedding": 4}),
                                                    ("guided", {"window": 30}),
                                                    ("guided", {"window": 30, "removal": "worst"})])
def test_out_of_order_workers_and_a_restart_replay_exactly(store_url: str, algorithm: str,
                                                           options: dict[str, Any]) -> None:
    clock = Clock(1_000_000.0, step=0.0)
    store = db.open_store(store_url)
    service = OrchestratorService(store, clock=clock)
    service.create_experiment(_spec(algorithm, options))
    rng = random.Random(4)
    held: list[tuple[WorkerInfo, Lease]] = []
    completed: list[tuple[int, float]] = []
    restarted = False
    while True:
        if len(completed) == 18 and not restarted:
            restarted = True  # a restarted server: a new service, none of the first one's caches
            if store_url != db.MEMORY_URL:
                store.close()
                store = db.open_store(store_url)
            service = OrchestratorService(store, clock=clock)
        if len(held) < 3:
            worker = (W1, W2)[len(held) % 2]
            got = service.lease(worker, "exp")
            if isinstance(got, Lease):
                held.append((worker, got))
                continue
            if got.done:
                break
        worker, le = held.pop(rng.randrange(len(held)))  # finish in random order
        accuracy = accuracy_of(le)
        service.report(le.individual_id, le.token, worker.worker_id, Metrics(accuracy=accuracy))
        completed.append((le.proposal_seq, accuracy))
    try:
        exp = service.get_experiment("exp")
        assert exp.state == "done" and exp.completed == 40
        report = verify_experiment(service.store, "exp")
        assert report.ok, report
        page = service.list_individuals("exp", 10_000, "", "completed")
        members = [i for i in page.individuals if i.in_population]
        if options.get("removal") == "worst":  # the P best
            best = sorted(completed, key=lambda c: -c[1])[:6]
            assert sorted(i.fitness for i in members) == sorted(a for _, a in best)
        else:  # the P most recent completions (rl; guided's default removal is the oldest, as aging)
            assert sorted(i.proposal_seq for i in members) == sorted(seq for seq, _ in completed[-6:])
        mutations = {i.mutation for i in page.individuals}
        assert any(m.startswith("rl:" if algorithm == "rl" else "edge_op") for m in mutations), mutations
    finally:
        store.close()


def test_bad_options_are_refused_when_the_experiment_is_created() -> None:
    service = OrchestratorService(db.open_store(db.MEMORY_URL))
    for algorithm, options, message in [
        ("rl", {"policy": "gru"}, "algorithm: algorithm option policy must be one of factorized, lstm"),
        ("rl", {"learning_rate": 0}, "algorithm: algorithm option learning_rate must be above 0"),
        ("guided", {"candidates": 0}, "algorithm: algorithm option candidates must be between 1 and 1000"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            service.create_experiment(_spec(algorithm, options))
        assert message in str(raised.value) and "\n" not in str(raised.value)
