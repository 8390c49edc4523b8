"""Chaos on PostgreSQL: the database SIGKILLed under a running server, a slow link and a cut-off link between
the server and the database, and load.

Each scenario runs an NB201 table experiment to the end with real worker loops (one channel each) and then
checks the invariants of ``chaos_helpers.check_invariants`` (one outcome per proposal, C completions counted
once each, the population is the last P completed, ``amoeba replay --verify`` passes). Outages are waited
for by their effects (status codes, health), never by sleeping for a guessed time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from chaos_helpers import (
    ServerProcess,
    TcpProxy,
    ThreadWorker,
    check_invariants,
    create_experiment,
    experiment_config,
    free_port,
    wait_for,
)
from conftest import PgServer
from grpc_health.v1 import health_pb2, health_pb2_grpc

import db
from orchestrator.server import RunningServer, ServerConfig, start
from orchestrator.service import open_service
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc
from worker.loop import Backoff

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.postgres]

HEALTH = "amoeba.v1.Orchestrator"


class DurablePgServer(PgServer):
    """The suite's throwaway server with ``synchronous_commit`` on: a commit is in the kernel's hands (WAL
    written) before the client hears of it, so a SIGKILL of every PostgreSQL process loses nothing that was
    acknowledged (the suite's shared server trades that for speed). ``fsync`` stays off: the machine does
    not crash, only the processes die."""

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=on -c full_page_writes=off -c max_connections=100")
        self._admin("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "120", "start")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def sigkill(self) -> int:
        """SIGKILL the postmaster and every process it started (no shutdown, no checkpoint); return how many."""
        root = self.postmaster_pid()
        victims = [root, *_children(root)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(_state(pid) in ("Z", "gone") for pid in victims), 30, "every PostgreSQL process to die")
        return len(victims)

    def start_after_crash(self) -> None:
        """Start again on the same data: crash recovery replays the log. The dead postmaster's lock file is
        and socket lock files are removed first (as an operator does once no process of it is left): its PID may
        linger as a zombie nobody reaps, which PostgreSQL would take for a live postmaster."""
        for stale in (self.data / "postmaster.pid", self.root / f".s.PGSQL.{self.port}.lock",
                      self.root / f".s.PGSQL.{self.port}"):
            stale.unlink(missing_ok=True)
        self.start()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() or ["?"])[0]
    except OSError:
        return "gone"


@pytest.fixture(scope="module")
def durable_pg() -> Iterator[DurablePgServer]:
    server = DurablePgServer()
    try:
        yield server
    finally:
        server.close()


def _health(channel: grpc.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=HEALTH), timeout=10).status


def _completed_ids(url: str, name: str) -> dict[int, int]:
    """Completed individual -> completion rank, read straight from the database."""
    store = db.open_store(url, check=False)
    try:
        with store.transaction() as tx:
            exp = tx.experiment(name)
            assert exp is not None
            return {r.id: r.completion_rank or 0 for r in tx.individuals(exp.id, -1, 10**6, "completed")}
    finally:
        store.close()


def _unavailable(workers: list[ThreadWorker]) -> int:
    return sum(w.client.codes()[grpc.StatusCode.UNAVAILABLE] for w in workers)


def _ride_out_an_outage(url: str, service_url: str, name: str, c: int, cut: Callable[[], None],
                        mend: Callable[[], None]) -> dict[str, Any]:
    """Workers against an in-process server on ``service_url``; ``cut`` the database away once work flows,
    check that the server says so (UNAVAILABLE, health NOT_SERVING), ``mend`` it, and check that the same
    server recovers by itself and the experiment completes with nothing committed lost."""
    create_experiment(url, experiment_config(name, evaluations=c, population=8, lease_timeout_s=3.0,
                                             sleep_s=(0.01, 0.04)))
    service = open_service(service_url)
    running: RunningServer = start(service, ServerConfig(port=0, grace_s=1.0, sweep_interval_s=0.5))
    workers = [ThreadWorker(running.address, name, f"t{k}", backoff=Backoff(base_s=0.05, cap_s=0.5,
                                                                           give_up_after_s=120.0)).start()
               for k in range(3)]
    channel = grpc.insecure_channel(running.address)
    stub = pb_grpc.OrchestratorStub(channel)
    try:
        wait_for(lambda: len(_completed_ids(url, name)) >= 10, 60, "the first completions")
        before = _completed_ids(url, name)
        cut()
        try:
            with pytest.raises(grpc.RpcError) as info:
                stub.LeaseWork(pb.LeaseWorkRequest(worker=pb.WorkerInfo(worker_id="probe"), experiment=name),
                               timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
            assert "database unavailable" in info.value.details()
            assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            seen = _unavailable(workers)
            wait_for(lambda: _unavailable(workers) >= seen + 3, 60, "the workers to see the outage")
        finally:
            mend()
        wait_for(lambda: _health(channel) == health_pb2.HealthCheckResponse.SERVING, 60, "health to turn SERVING")
        summaries = [w.join(180) for w in workers]
    finally:
        for w in workers:
            w.loop.request_stop()
        channel.close()
        running.stop(1.0)
        service.store.close()
    assert all(s.exit_reason == "done" for s in summaries), summaries
    after = _completed_ids(url, name)
    lost = {i: r for i, r in before.items() if after.get(i) != r}
    assert not lost, f"completions committed before the outage are gone or moved: {lost}"
    outcome = check_invariants(url, name)
    assert outcome.lost == 0 and outcome.duplicates == 0
    return {"outcome": outcome, "summaries": summaries, "unavailable": _unavailable(workers)}


def test_postgresql_sigkilled_under_a_running_server_and_restarted(durable_pg: DurablePgServer) -> None:
    url = durable_pg.database()
    db.upgrade(url)
    killed: list[int] = []
    got = _ride_out_an_outage(url, url, "pgkill", 60, cut=lambda: killed.append(durable_pg.sigkill()),
                              mend=durable_pg.start_after_crash)
    assert killed and killed[0] >= 2  # the postmaster and its backends
    print(f"\npostgresql sigkill: {killed[0]} processes killed")
    assert 60 - 3 <= sum(s.evaluated for s in got["summaries"]) <= 60


def test_a_cut_off_database_connection(pg_url: str, pg_server: Any) -> None:
    proxy = TcpProxy(pg_server.port)
    proxy.start()
    through = pg_url.replace(f":{pg_server.port}/", f":{proxy.port}/")
    got = _ride_out_an_outage(pg_url, through, "pgcut", 60, cut=proxy.stop, mend=proxy.start)
    proxy.stop()
    assert got["unavailable"] >= 3


def test_a_slow_database_connection(pg_url: str, pg_server: Any) -> None:
    """Every byte between the server and PostgreSQL waits 20 ms each way: slower, and nothing else changes
    (no call fails, every invariant holds)."""
    c = 24
    proxy = TcpProxy(pg_server.port, delay_s=0.02)
    proxy.start()
    through = pg_url.replace(f":{pg_server.port}/", f":{proxy.port}/")
    create_experiment(pg_url, experiment_config("pgslow", evaluations=c, population=6, lease_timeout_s=30.0))
    service = open_service(through)
    running = start(service, ServerConfig(port=0, grace_s=1.0))
    started = time.monotonic()
    workers = [ThreadWorker(running.address, "pgslow", f"s{k}").start() for k in range(3)]
    try:
        summaries = [w.join(180) for w in workers]
    finally:
        for w in workers:
            w.loop.request_stop()
        running.stop(1.0)
        service.store.close()
        proxy.stop()
    elapsed = time.monotonic() - started
    codes = {code for w in workers for _, _, _, code in w.client.calls}
    assert codes == {None}, codes
    assert sum(s.evaluated for s in summaries) == c and all(s.exit_reason == "done" for s in summaries)
    outcome = check_invariants(pg_url, "pgslow")
    assert outcome.lost == 0 and outcome.duplicates == 0 and outcome.expired == 0
    print(f"\nslow link: {c} evaluations in {elapsed:.1f} s through a 20 ms proxy")


def test_load_on_postgresql(pg_url: str) -> None:
    """24 concurrent workers against one ``amoeba server`` process on PostgreSQL, no faults: every call OK."""
    workers_n, c = 24, 360
    create_experiment(pg_url, experiment_config("pgload", evaluations=c, population=50, sample=10,
                                                lease_timeout_s=60.0))
    server = ServerProcess(pg_url, free_port())
    server.start()
    workers = [ThreadWorker(server.address, "pgload", f"l{k:02d}",
                            backoff=Backoff(base_s=0.05, cap_s=0.5, give_up_after_s=60)) for k in range(workers_n)]
    try:
        for w in workers:
            w.start()
        summaries = [w.join(240) for w in workers]
    finally:
        assert server.stop() == 0
    codes = [code for w in workers for _, _, _, code in w.client.calls]
    assert set(codes) == {None}, {str(code) for code in codes}
    assert all(s.exit_reason == "done" for s in summaries)
    assert sum(s.evaluated for s in summaries) == c
    outcome = check_invariants(pg_url, "pgload")
    assert outcome.lost == 0 and outcome.duplicates == 0 and outcome.expired == 0
    calls = sorted(t for w in workers for m, _, t, _ in w.client.calls if m in ("LeaseWork", "ReportResult"))
    print(f"\npostgresql load: {workers_n} workers, C = {c}: lease p50 {calls[len(calls) // 2] * 1e3:.1f} ms, "
          f"p99 {calls[int(0.99 * len(calls))] * 1e3:.1f} ms")
