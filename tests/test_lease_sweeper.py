"""Leases expire with no traffic at all: the server's sweeper requeues a dead worker's individual within
the lease timeout plus the sweep interval; and pause/resume reach a real server through the Python client."""

from __future__ import annotations

import time

import pytest

import amoeba
from db.memory import MemoryStore
from domain import Lease, WorkerInfo
from orchestrator.server import ServerConfig, start
from orchestrator.service import OrchestratorService
from protos.client import OrchestratorClient
from tests.builders import spec

pytestmark = pytest.mark.grpc


def _wait(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_the_sweeper_requeues_a_dead_workers_lease_without_any_other_call() -> None:
    service = OrchestratorService(MemoryStore())
    service.create_experiment(spec("swept", lease_timeout_s=0.5))
    server = start(service, ServerConfig(port=0, sweep_interval_s=0.2))
    try:
        with OrchestratorClient(server.address) as client:
            lease = client.lease(WorkerInfo("doomed"), "swept")
            assert isinstance(lease, Lease)
        # The worker dies here: no heartbeat, no release, and no other worker asks for work.
        leased_at = time.monotonic()
        assert _wait(lambda: service.status("swept")["queued"] == 1)
        waited = time.monotonic() - leased_at
        status = service.status("swept")
        assert (status["leased"], status["queued"]) == (0, 1)
        assert waited >= 0.5  # not before the lease ran out
        with service.store.transaction() as tx:
            exp = tx.experiment("swept")
            assert exp is not None
            kinds = [e.kind for e in tx.events(exp.id, 0, 100)]
        assert kinds.count("expired") == 1
        # The next worker gets the same individual, as attempt 2.
        again = service.lease(WorkerInfo("next"), "swept")
        assert isinstance(again, Lease) and (again.proposal_seq, again.attempt) == (lease.proposal_seq, 2)
    finally:
        server.stop()


def test_sweeper_off_leaves_expiry_to_the_next_lease_call() -> None:
    service = OrchestratorService(MemoryStore())
    service.create_experiment(spec("unswept", lease_timeout_s=0.2))
    server = start(service, ServerConfig(port=0, sweep_interval_s=0))
    try:
        with OrchestratorClient(server.address) as client:
            assert isinstance(client.lease(WorkerInfo("doomed"), "unswept"), Lease)
            time.sleep(0.6)
            assert service.status("unswept")["leased"] == 1  # nobody noticed: no sweeper, no traffic
            client.lease(WorkerInfo("next"), "unswept")
            assert service.status("unswept")["queued"] == 0  # the call expired it and leased it again
    finally:
        server.stop()


def test_pause_and_resume_through_the_python_client() -> None:
    service = OrchestratorService(MemoryStore())
    service.create_experiment(spec("held"))
    server = start(service, ServerConfig(port=0, token="t"))
    try:
        with amoeba.Client(server.address, token="t") as client:
            assert client.pause("held", "maintenance").paused_reason == "maintenance"
            assert client.status("held")["state"] == "paused"
            with pytest.raises(amoeba.FailedPrecondition, match="not running"):
                client.pause("held")
            assert client.resume("held").state == "running"
            with pytest.raises(amoeba.NotFound):
                client.resume("nope")
    finally:
        server.stop()
