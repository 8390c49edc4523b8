"""Prefetch: a worker leases the next child while the current one runs and prepares it in the background;
every lease is still settled exactly once, heartbeated while it waits, and handed back when the loop ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from builders import nb201_metrics, spec

from domain import Metrics
from orchestrator.server import RunningServer, ServerConfig, start
from orchestrator.service import OrchestratorService, open_service
from protos.client import OrchestratorClient
from worker.loop import Worker, WorkerConfig
from worker.trial import Trial

pytestmark = pytest.mark.grpc


class Preparing:
    """An evaluator with ``prepare``: records the order of prepare/evaluate calls and what was in flight."""

    name = "preparing"

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.prepared: set[int] = set()

    def prepare(self, trial: Trial) -> float:
        with self.lock:
            self.events.append(("prepare", trial.proposal_seq))
            self.prepared.add(trial.proposal_seq)
        return 0.0

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
        with self.lock:
            self.events.append(("evaluate", trial.proposal_seq))
        return nb201_metrics(trial.lease)


@pytest.fixture
def served() -> Iterator[tuple[OrchestratorService, RunningServer]]:
    service = open_service("memory://")
    server = start(service, ServerConfig(port=0))
    try:
        yield service, server
    finally:
        server.stop()
        service.store.close()


def _run(server: RunningServer, evaluator: Any, **config: Any) -> Any:
    client = OrchestratorClient(server.address)
    try:
        return Worker(client, evaluator, WorkerConfig(experiment="exp", **config)).run()
    finally:
        client.close()


def test_the_next_child_is_prepared_while_the_current_one_is_evaluated(
        served: tuple[OrchestratorService, RunningServer]) -> None:
    service, server = served
    service.create_experiment(spec("exp", population=4, sample=2, evaluations=10, seed=3))
    evaluator = Preparing()
    summary = _run(server, evaluator, prefetch=True)
    assert (summary.evaluated, summary.failed, summary.released) == (10, 0, 0)
    status = service.status("exp")
    assert (status["state"], status["completed"], status["leased"]) == ("done", 10, 0)
    evaluated = [seq for kind, seq in evaluator.events if kind == "evaluate"]
    assert evaluated == list(range(10))
    # Every child after the first was prepared before it was evaluated ...
    for seq in range(1, 10):
        assert evaluator.events.index(("prepare", seq)) < evaluator.events.index(("evaluate", seq))
    assert ("prepare", 0) not in evaluator.events
    # ... and leased while its predecessor was still in evaluation (the log: leased k before completed k - 1).
    with service.store.transaction() as tx:
        exp = tx.experiment("exp")
        assert exp is not None
        log = [(e.kind, e.proposal_seq) for e in tx.events(exp.id, 0, 10_000)]
    for seq in range(1, 10):
        assert log.index(("leased", seq)) < log.index(("completed", seq - 1))


def test_the_child_leased_ahead_is_handed_back_at_max_evaluations(
        served: tuple[OrchestratorService, RunningServer]) -> None:
    service, server = served
    service.create_experiment(spec("exp", population=4, sample=2, evaluations=10, seed=3))
    evaluator = Preparing()
    summary = _run(server, evaluator, prefetch=True, max_evaluations=3)
    assert (summary.evaluated, summary.exit_reason) == (3, "max-evaluations")
    # Nothing beyond what fits under the limit was leased ahead, and nothing is left held.
    assert evaluator.prepared == {1, 2}
    status = service.status("exp")
    assert (status["completed"], status["leased"]) == (3, 0)


def test_without_prefetch_nothing_is_prepared(served: tuple[OrchestratorService, RunningServer]) -> None:
    service, server = served
    service.create_experiment(spec("exp", population=4, sample=2, evaluations=5, seed=3))
    evaluator = Preparing()
    assert _run(server, evaluator).evaluated == 5
    assert evaluator.prepared == set()


def test_a_stop_request_releases_the_current_and_the_prefetched_lease(
        served: tuple[OrchestratorService, RunningServer]) -> None:
    service, server = served
    service.create_experiment(spec("exp", population=4, sample=2, evaluations=10, seed=3))
    client = OrchestratorClient(server.address)
    started = threading.Event()

    class Stuck(Preparing):
        def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
            if trial.proposal_seq == 2:
                started.set()
                stop.wait(60)
                from worker.evaluator import EvaluationCancelled

                raise EvaluationCancelled("stopped")
            return super().evaluate(trial, stop)

    worker = Worker(client, Stuck(), WorkerConfig(experiment="exp", prefetch=True))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()))
    thread.start()
    assert started.wait(60)
    assert service.status("exp")["leased"] == 2  # the one in evaluation and the one leased ahead
    worker.request_stop()
    thread.join(60)
    client.close()
    assert not thread.is_alive() and result[0].exit_reason == "stopped"
    status = service.status("exp")
    assert (status["completed"], status["leased"], status["queued"]) == (2, 0, 2)
