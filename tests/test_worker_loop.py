"""The worker loop against a real server on loopback: one round trip per evaluation, heartbeats, failures,
lost leases, stop requests and reconnecting with backoff."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from builders import nb201_metrics, spec
from chaos_helpers import RecordingClient, free_port

from domain import FailedPrecondition, Metrics
from genome import NB201Genome
from orchestrator.server import RunningServer, ServerConfig, start
from orchestrator.service import OrchestratorService, open_service
from protos.client import OrchestratorClient
from worker.evaluator import EvaluationCancelled, EvaluationFailed
from worker.loop import Backoff, ServerUnreachable, Worker, WorkerConfig
from worker.table import TableEvaluator
from worker.trial import Trial, TrialError

pytestmark = pytest.mark.grpc


class Counting:
    """Wraps a service and counts the use cases called (to check round trips)."""

    def __init__(self, inner: OrchestratorService) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.refuse_reports = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        def call(*args: Any, **kw: Any) -> Any:
            self.calls[name] += 1
            if name == "report" and self.refuse_reports:
                self.refuse_reports -= 1
                raise FailedPrecondition("lease was re-issued")
            return target(*args, **kw)

        return call


def create(service: Any, name: str = "exp", evaluations: int = 12, **extra: Any) -> None:
    service.create_experiment(spec(name, population=4, sample=2, evaluations=evaluations, seed=3, **extra))


@pytest.fixture
def service() -> Iterator[Counting]:
    inner = open_service("memory://")
    yield Counting(inner)
    inner.store.close()


@pytest.fixture
def server(service: Counting) -> Iterator[RunningServer]:
    running = start(service, ServerConfig(port=0, grace_s=1.0))  # type: ignore[arg-type]
    yield running
    running.stop(0.5)


def run_worker(server: RunningServer, evaluator: Any = None, **config: Any) -> tuple[Worker, Any]:
    client = OrchestratorClient(server.address, rpc_timeout_s=10)
    worker = Worker(client, evaluator or TableEvaluator(), WorkerConfig(**config), seed=0)
    try:
        return worker, worker.run()
    finally:
        client.close()


def states(service: Counting, name: str = "exp") -> Counter[str]:
    return Counter(i.state for i in service.inner.list_individuals(name, 1000, "", None).individuals)


def test_runs_to_the_end_with_one_round_trip_per_evaluation(service: Counting, server: RunningServer) -> None:
    create(service, evaluations=12)
    worker, summary = run_worker(server, experiment="exp")
    assert (summary.evaluated, summary.failed, summary.dropped, summary.exit_reason) == (12, 0, 0, "done")
    assert states(service) == {"completed": 12}
    assert service.calls["report"] == 12 and service.calls["lease"] == 1  # every other lease rode on a report
    assert worker.worker_id.count("-") >= 2


def test_without_an_experiment_it_moves_on_to_the_next_one(service: Counting, server: RunningServer) -> None:
    create(service, "first", evaluations=5)
    create(service, "second", evaluations=4)
    _, summary = run_worker(server)
    assert summary.evaluated == 9 and summary.exit_reason == "done"
    assert states(service, "first") == {"completed": 5} and states(service, "second") == {"completed": 4}


def test_a_waiting_worker_picks_up_experiments_created_later(service: Counting, server: RunningServer) -> None:
    client = OrchestratorClient(server.address, rpc_timeout_s=10)
    worker = Worker(client, TableEvaluator(), WorkerConfig(wait_for_work=True, max_idle_wait_s=0.05))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # nothing is running, yet it waits
    create(service, "late", evaluations=3)
    deadline = time.time() + 20
    while service.inner.get_experiment("late").state != "done" and time.time() < deadline:
        time.sleep(0.05)
    worker.request_stop()
    thread.join(10)
    client.close()
    assert result[0].evaluated == 3 and result[0].exit_reason == "stopped"


def test_max_evaluations_leaves_nothing_leased(service: Counting, server: RunningServer) -> None:
    create(service, evaluations=50)
    _, summary = run_worker(server, experiment="exp", max_evaluations=3)
    assert (summary.evaluated, summary.exit_reason) == (3, "max-evaluations")
    assert states(service) == {"completed": 3}


class Slow:
    """Sleeps (interruptibly) before answering; fails proposals listed in ``fail``."""

    name = "slow"

    def __init__(self, seconds: float, fail: frozenset[int] = frozenset()) -> None:
        self.seconds, self.fail = seconds, fail
        self.started = threading.Event()

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
        self.started.set()
        if trial.proposal_seq in self.fail:
            raise EvaluationFailed(f"NaN loss in proposal {trial.proposal_seq}")
        if stop.wait(self.seconds):
            raise EvaluationCancelled("stopping")
        return Metrics(accuracy=0.5 + trial.proposal_seq / 100)


def test_heartbeats_keep_a_short_lease_alive(service: Counting, server: RunningServer) -> None:
    create(service, evaluations=2, lease_timeout_s=0.4)
    _, summary = run_worker(server, Slow(1.0), experiment="exp")
    assert summary.evaluated == 2 and summary.dropped == 0
    assert service.calls["heartbeat"] >= 4  # (deadline - now) / 3 ~ every 0.13 s for 1 s, twice


def test_evaluation_failures_are_reported_with_their_reason(service: Counting, server: RunningServer) -> None:
    create(service, evaluations=4, max_attempts=1)
    _, summary = run_worker(server, Slow(0.0, fail=frozenset({1})), experiment="exp")
    assert summary.failed == 1 and summary.evaluated == 4
    failed = service.inner.list_individuals("exp", 100, "", "failed").individuals
    assert [(i.proposal_seq, i.failure_reason) for i in failed] == [(1, "NaN loss in proposal 1")]


def test_a_refused_report_drops_the_work_and_carries_on(service: Counting, server: RunningServer) -> None:
    # The refused individual stays leased until its lease expires and it is handed out again.
    create(service, evaluations=4, lease_timeout_s=0.5)
    service.refuse_reports = 1
    _, summary = run_worker(server, experiment="exp")
    assert summary.dropped == 1 and summary.evaluated == 4 and summary.exit_reason == "done"


def test_stop_cancels_the_evaluation_and_releases_the_lease(service: Counting, server: RunningServer) -> None:
    create(service, evaluations=4)
    slow = Slow(30.0)
    client = OrchestratorClient(server.address, rpc_timeout_s=10)
    worker = Worker(client, slow, WorkerConfig(experiment="exp"))
    threading.Thread(target=lambda: (slow.started.wait(10), worker.request_stop()), daemon=True).start()
    started = time.monotonic()
    summary = worker.run()
    client.close()
    assert time.monotonic() - started < 10
    assert (summary.released, summary.evaluated, summary.exit_reason) == (1, 0, "stopped")
    assert states(service) == {"queued": 1}
    assert service.calls["release"] == 1


def test_an_unexpected_evaluator_error_releases_the_lease_and_ends_the_worker(
    service: Counting, server: RunningServer
) -> None:
    class Broken:
        name = "broken"

        def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
            raise OSError("dataset folder vanished")

    create(service, evaluations=3)
    with pytest.raises(OSError, match="vanished"):
        run_worker(server, Broken(), experiment="exp")
    assert states(service) == {"queued": 1}


def test_retries_with_backoff_until_the_server_comes_up() -> None:
    port = free_port()
    inner = open_service("memory://")
    create(inner, evaluations=3)
    holder: dict[str, RunningServer] = {}

    def late_start() -> None:
        time.sleep(1.0)
        holder["server"] = start(inner, ServerConfig(port=port, grace_s=0.5))

    threading.Thread(target=late_start, daemon=True).start()
    client = OrchestratorClient(f"127.0.0.1:{port}", rpc_timeout_s=5)
    worker = Worker(client, TableEvaluator(), WorkerConfig(experiment="exp", backoff=Backoff(0.05, 0.3, 30)), seed=1)
    try:
        summary = worker.run()
    finally:
        client.close()
        deadline = time.time() + 10
        while "server" not in holder and time.time() < deadline:
            time.sleep(0.05)
        if "server" in holder:
            holder["server"].stop(0.5)
    assert summary.evaluated == 3 and summary.exit_reason == "done"


def test_gives_up_when_the_server_stays_away() -> None:
    client = OrchestratorClient(f"127.0.0.1:{free_port()}", rpc_timeout_s=1)
    worker = Worker(client, TableEvaluator(), WorkerConfig(backoff=Backoff(0.02, 0.1, 0.5)), seed=2)
    with pytest.raises(ServerUnreachable, match="unreachable"):
        worker.run()
    client.close()


def test_backoff_is_capped_exponential_with_jitter() -> None:
    backoff, rng = Backoff(base_s=0.1, cap_s=2.0), random.Random(0)
    for attempt in range(12):
        bound = min(2.0, 0.1 * 2**attempt)
        delays = [backoff.delay(attempt, rng) for _ in range(50)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # jitter spreads over the whole range, not a fixed delay


# --- Worker.trials(): a loop of one's own ----------------------------------------------------------------


def test_trials_are_the_leases_with_their_genome_parsed(service: Counting, server: RunningServer) -> None:
    create(service, evaluations=3, training={"note": "kept as is"})
    with OrchestratorClient(server.address, rpc_timeout_s=10) as client:
        worker = Worker(client, None, WorkerConfig(experiment="exp"), seed=0)
        seen: list[Trial] = []
        for trial in worker.trials():
            seen.append(trial)
            assert isinstance(trial.genome, NB201Genome) and trial.genome.to_json()["space"] == "nb201"
            assert isinstance(trial.genome_json, str) and trial.space == "nb201"
            assert isinstance(trial.seed, int) and trial.training == {"note": "kept as is"}
            assert trial.experiment == "exp" and trial.attempt == 1 and not trial.stopping and not trial.settled
            # The orchestrator priced the simulated latency when it proposed the child.
            assert trial.latency_ms is not None and trial.latency_ms > 0
            trial.report(accuracy=0.5, train_seconds=1.0)
            assert trial.settled
            with pytest.raises(TrialError, match="reported already"):
                trial.report(accuracy=0.6)
    assert [t.proposal_seq for t in seen] == [0, 1, 2] and len({t.seed for t in seen}) == 3
    assert worker.counts == {"evaluated": 3, "failed": 0, "dropped": 0, "released": 0, "stopped": 0}
    assert worker.exit_reason == "done" and states(service) == {"completed": 3}
    assert service.calls["lease"] == 1  # every other trial came with the report before it


def test_a_consumer_that_reports_fails_and_breaks_early_leaves_no_lease_held(
    service: Counting, server: RunningServer
) -> None:
    create(service, evaluations=12)
    with OrchestratorClient(server.address, rpc_timeout_s=10) as client:
        worker = Worker(client, None, WorkerConfig(experiment="exp"), seed=0)
        seen: list[int] = []
        for trial in worker.trials():
            seen.append(trial.proposal_seq)
            if len(seen) == 3:
                trial.fail("loss diverged")
                continue
            trial.report(nb201_metrics(trial.lease))
            if len(seen) == 5:
                break  # the report just brought the next lease with it: it must go back
        assert seen == [0, 1, 2, 3, 4]
        assert worker.counts == {"evaluated": 4, "failed": 1, "dropped": 0, "released": 1, "stopped": 0}
        rows = service.inner.list_individuals("exp", 100, "", None).individuals
        assert Counter(i.state for i in rows) == {"completed": 4, "failed": 1, "queued": 1}
        assert [(i.proposal_seq, i.failure_reason) for i in rows if i.state == "failed"] == [(2, "loss diverged")]
        queued = next(i for i in rows if i.state == "queued")
        assert queued.proposal_seq == 5 and queued.lease_owner is None
        # One lease to start, one after the failure (a failure brings no next lease); the rest rode on reports.
        assert (service.calls["lease"], service.calls["report"], service.calls["release"]) == (2, 4, 1)

        # A consumer that breaks off a trial it never settled: released at once, without using an attempt.
        again = Worker(client, None, WorkerConfig(experiment="exp"), seed=1)
        for trial in again.trials():
            held = trial
            break
        assert (held.proposal_seq, held.attempt) == (5, 1)
        assert again.counts == {"evaluated": 0, "failed": 0, "dropped": 0, "released": 1, "stopped": 0}
        assert states(service) == {"completed": 4, "failed": 1, "queued": 1}

        # An exception in the consumer's loop: the same.
        third = Worker(client, None, WorkerConfig(experiment="exp"), seed=2)
        with pytest.raises(RuntimeError, match="user code"):
            for trial in third.trials():
                assert trial.proposal_seq == 5
                raise RuntimeError("user code broke")
        assert third.counts["released"] == 1 and states(service) == {"completed": 4, "failed": 1, "queued": 1}
    assert service.calls["release"] == 3


def test_stop_while_the_server_is_gone_makes_at_most_one_more_attempt() -> None:
    client = RecordingClient(f"127.0.0.1:{free_port()}", rpc_timeout_s=2)
    # Patient: it would retry for ten minutes on its own.
    worker = Worker(client, TableEvaluator(), WorkerConfig(experiment="exp", backoff=Backoff(0.05, 0.2, 600)), seed=3)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(client.calls) < 3:
            assert time.monotonic() < deadline and thread.is_alive(), client.calls
            time.sleep(0.02)
        stopped_at = time.monotonic()
        worker.request_stop()
        thread.join(5)
        assert not thread.is_alive(), "the worker kept retrying after the stop request"
    finally:
        client.close()
    assert time.monotonic() - stopped_at < 5
    after = [c for c in client.calls if c[1] >= stopped_at]
    assert len(after) <= 1, after  # the one last attempt, no more
    assert {code for _, _, _, code in client.calls} <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    assert result[0].exit_reason == "stopped" and result[0].evaluated == 0
