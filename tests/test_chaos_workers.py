"""Chaos on the worker side: SIGKILLed worker processes, a worker cut off from the server, a slow worker.

Every scenario runs an NB201 table experiment on loopback to the end and then checks the invariants
(``chaos_helpers.check_invariants``): every proposal has one outcome, C completions counted once each,
the population is the last P completed, and ``amoeba replay --verify`` passes.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from chaos_helpers import (
    TcpProxy,
    ThreadWorker,
    check_invariants,
    create_experiment,
    experiment_config,
    opened_service,
    wait_for,
    worker_process,
)

from domain import AlreadyExists, FailedPrecondition, Lease, Metrics, WorkerInfo
from orchestrator.server import RunningServer, ServerConfig, start
from protos.client import OrchestratorClient
from worker.table import TableEvaluator
from worker.trial import Trial

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    value: str = request.getfixturevalue(fixture)
    return value


def serve(url: str) -> tuple[Any, RunningServer]:
    from orchestrator.service import open_service

    service = open_service(url)
    return service, start(service, ServerConfig(port=0, grace_s=1.0, handler_threads=4))


@pytest.fixture
def server(url: str) -> Iterator[RunningServer]:
    service, running = serve(url)
    yield running
    running.stop(1.0)
    service.store.close()


class _KillMidReport:
    """The service, except that the third report of a chosen worker SIGKILLs that worker's process first:
    the report still commits (the server does not know), its answer, and the lease it carries, are lost."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self.victim: tuple[str, subprocess.Popen[str]] | None = None
        self.reports: dict[str, int] = {}
        self.killed_at: int | None = None  # the individual whose report the victim died in

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def report(self, individual_id: int, token: str, worker_id: str, metrics: Any, lease_next: bool = False) -> Any:
        n = self.reports[worker_id] = self.reports.get(worker_id, 0) + 1
        if self.victim is not None and worker_id == self.victim[0] and n == 3:
            self.victim[1].kill()
            self.victim[1].wait(10)
            self.killed_at = individual_id
        return self._service.report(individual_id, token, worker_id, metrics, lease_next)


def test_workers_sigkilled_at_random_moments_lose_nothing_and_count_nothing_twice(url: str) -> None:
    from orchestrator.service import open_service

    c = 50
    create_experiment(url, experiment_config("kill", evaluations=c, population=8, lease_timeout_s=1.0,
                                             sleep_s=(0.05, 0.25)))
    service = _KillMidReport(open_service(url))
    server = start(service, ServerConfig(port=0, grace_s=1.0))
    rng = random.Random(1234)
    workers = {f"w{k}": worker_process(server.address, "kill", f"w{k}") for k in range(3)}
    # One worker dies mid-report, deterministically; the others at random moments.
    service.victim = ("w0", workers["w0"])
    killed: list[str] = []
    try:
        with opened_service(url) as svc:
            # Kill only once work flows, then at random moments, each victim replaced by a fresh process.
            wait_for(lambda: svc.status("kill")["completed"] >= 3, 60, "the first completions")
            for n in range(3):
                time.sleep(rng.uniform(0.2, 0.9))
                alive = sorted(k for k, p in workers.items() if p.poll() is None and k != "w0")
                if not alive or svc.status("kill")["state"] == "done":
                    break
                victim = rng.choice(alive)
                workers[victim].kill()  # SIGKILL: no release, no goodbye
                workers[victim].wait(10)
                killed.append(victim)
                workers[f"r{n}"] = worker_process(server.address, "kill", f"r{n}")
            wait_for(lambda: service.killed_at is not None, 60, "the kill in the middle of a report")
        summaries = []
        for wid, proc in workers.items():
            if wid in killed or wid == "w0":
                continue
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        server.stop(1.0)
        service.store.close()
    assert len(killed) >= 3 and workers["w0"].returncode == -9
    assert all(s["exit_reason"] == "done" for s in summaries)
    outcome = check_invariants(url, "kill")
    assert outcome.lost == 0 and outcome.duplicates == 0
    # The killed workers held leases: those expired and their individuals were handed out again. The one
    # killed mid-report got its report counted once, and the lease answered with it was handed out again.
    assert outcome.expired >= 1, outcome
    with opened_service(url) as svc:
        rows = svc.list_individuals("kill", 1000, "", None).individuals
        with svc.store.transaction() as tx:
            exp = tx.experiment("kill")
            assert exp is not None
            events = tx.events(exp.id, 0, 100_000)
    reissued = [r for r in rows if r.attempts >= 2]
    assert reissued and all(r.state in ("completed", "failed") for r in reissued)
    by_id = {r.id: r for r in rows}
    assert by_id[service.killed_at].state == "completed"
    assert sum(1 for e in events if e.kind == "completed" and e.individual_id == service.killed_at) == 1
    orphan = next(e.individual_id for e in events if e.kind == "leased" and e.data_json.find('"w0"') >= 0
                  and e.seq > next(x.seq for x in events if x.kind == "completed" and x.individual_id == service.killed_at))
    assert any(e.kind == "expired" and e.individual_id == orphan for e in events)
    assert by_id[orphan].attempts >= 2 and by_id[orphan].state == "completed"


def test_a_slow_worker_keeps_its_lease_while_it_beats_and_loses_it_on_time_when_it_stops(
        url: str, server: RunningServer) -> None:
    timeout = 1.5
    create_experiment(url, experiment_config("slow", evaluations=12, population=4, lease_timeout_s=timeout))
    helper = ThreadWorker(server.address, "slow", "helper")
    with OrchestratorClient(server.address, rpc_timeout_s=10) as client:
        held = client.lease(WorkerInfo("slowpoke"), "slow")
        assert isinstance(held, Lease)
        # Beating for two lease timeouts keeps the lease, although others lease and expire all along.
        helper.start()
        deadline = held.deadline
        until = time.time() + 2 * timeout
        while time.time() < until:
            time.sleep(timeout / 5)
            deadline = client.heartbeat(held.individual_id, held.token, "slowpoke")
        with opened_service(url) as svc:
            ind = next(i for i in svc.list_individuals("slow", 100, "", None).individuals if i.id == held.individual_id)
            assert ind.state == "leased" and ind.lease_owner == "slowpoke" and ind.attempts == 1
        # Now the heartbeats stop: the lease expires within timeout + one lease sweep (the helper polls
        # every retry_after_s = 1 s while everything else is leased).
        with opened_service(url) as svc:
            def expired_at() -> float | None:
                with svc.store.transaction() as tx:
                    exp = tx.experiment("slow")
                    assert exp is not None
                    events = tx.events(exp.id, 0, 10_000)
                return next((e.at for e in events if e.kind == "expired" and e.individual_id == held.individual_id),
                            None)

            at = wait_for(expired_at, 30, "the lease to expire")
        assert deadline <= at <= deadline + 1.0 + 1.0, (at - deadline)
        # Its late report is refused: the lease is no longer its own.
        with pytest.raises((FailedPrecondition, AlreadyExists)) as info:
            client.report(held.individual_id, held.token, "slowpoke", Metrics(accuracy=0.5), lease_next=False)
        assert info.value.code in ("FAILED_PRECONDITION", "ALREADY_EXISTS")  # type: ignore[attr-defined]
        summary = helper.join(60)
    assert summary.evaluated == 12 and summary.exit_reason == "done"
    outcome = check_invariants(url, "slow")
    assert outcome.expired >= 1 and outcome.lost == 0 and outcome.duplicates == 0


class _Gate:
    """An evaluator whose first evaluation waits for the test; the rest are instant table look-ups."""

    name = "gate"

    def __init__(self) -> None:
        self.inner = TableEvaluator()
        self.entered = threading.Event()
        self.go = threading.Event()
        self.first: Trial | None = None

    def evaluate(self, trial: Trial, stop: threading.Event) -> Metrics:
        if self.first is None:
            self.first = trial
            self.entered.set()
            assert self.go.wait(60)
        return self.inner.evaluate(trial, stop)


def test_a_worker_cut_off_from_the_server_retries_with_backoff_and_its_late_report_is_refused(
        url: str, server: RunningServer) -> None:
    timeout = 1.0
    c = 30
    create_experiment(url, experiment_config("cut", evaluations=c, population=5, lease_timeout_s=timeout))
    proxy = TcpProxy(server.port)
    proxy.start()
    gate = _Gate()
    # A short call timeout: a connection attempt that hangs (rather than being refused) counts as a try too.
    cut = ThreadWorker(proxy.address, "cut", "behind-proxy", evaluator=gate, rpc_timeout_s=2.0).start()
    down = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    try:
        assert gate.entered.wait(30)
        first = gate.first
        assert first is not None
        proxy.stop()  # the worker's address is now unreachable (connection refused)
        time.sleep(timeout + 0.2)
        # Another worker asks for work: the cut-off worker's lease has expired and is re-issued to it.
        with opened_service(url) as svc:
            other = svc.lease(WorkerInfo("other"), "cut")
            assert isinstance(other, Lease)
            assert (other.individual_id, other.attempt) == (first.individual_id, 2)
            # The cut-off worker finishes and tries to report: refused connections, retried with backoff.
            # (Meanwhile the new holder keeps its lease alive.)
            def codes(*wanted: grpc.StatusCode) -> int:
                svc.heartbeat(other.individual_id, other.token, "other")
                got = cut.client.codes("ReportResult")
                return sum(got[code] for code in wanted)

            gate.go.set()
            wait_for(lambda: codes(*down) >= 3, 30, "report retries")
            time.sleep(0.3)
            tries_while_down = codes(*down)
            proxy.start()
            # Back on the network: the late report reaches the server and is refused, the worker moves on.
            wait_for(lambda: codes(grpc.StatusCode.FAILED_PRECONDITION) == 1, 30, "the late report to be refused")
            svc.report(other.individual_id, other.token, "other", Metrics(accuracy=0.6))
        summary = cut.join(60)
    finally:
        gate.go.set()
        proxy.stop()
    # Backoff, not a hot loop: a handful of tries in the ~1 s the address was unreachable.
    assert 3 <= tries_while_down <= 12, cut.client.calls
    report_starts = [t for m, t, _, code in cut.client.calls if m == "ReportResult" and code in down]
    gaps = [b - a for a, b in itertools.pairwise(report_starts)]
    assert max(gaps) > 0.05, gaps  # it waited between tries
    assert (summary.dropped, summary.exit_reason) == (1, "done")
    assert summary.evaluated == c - 1
    outcome = check_invariants(url, "cut")
    assert outcome.expired == 1 and outcome.lost == 0 and outcome.duplicates == 0
    with opened_service(url) as svc:
        row = next(i for i in svc.list_individuals("cut", 100, "", None).individuals if i.id == first.individual_id)
    assert (row.state, row.attempts, row.accuracy) == ("completed", 2, 0.6)
