"""Chaos on the server side: the orchestrator SIGKILLed and restarted on the same database, several times, and
PostgreSQL restarted under a running server. Workers (real worker loops, one channel each) ride it out with
backoff, the experiment completes, and the invariants of ``chaos_helpers.check_invariants`` hold."""

from __future__ import annotations

import random
import time
from typing import Any

import grpc
import pytest
from chaos_helpers import (
    ServerProcess,
    ThreadWorker,
    check_invariants,
    create_experiment,
    experiment_config,
    free_port,
    opened_service,
    status,
    wait_for,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.server import ServerConfig, start
from orchestrator.service import open_service
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    value: str = request.getfixturevalue(fixture)
    return value


def test_the_orchestrator_sigkilled_and_restarted_several_times_loses_nothing(url: str) -> None:
    c, kills = 60, 3
    create_experiment(url, experiment_config("phoenix", evaluations=c, population=8, lease_timeout_s=1.5,
                                             sleep_s=(0.01, 0.05)))
    server = ServerProcess(url, free_port())
    server.start()
    workers = [ThreadWorker(server.address, "phoenix", f"t{k}").start() for k in range(3)]
    rng = random.Random(99)
    try:
        for _ in range(kills):
            # Kill once work has flowed through this incarnation, at a random moment.
            before = status(url, "phoenix")["completed"]
            wait_for(lambda b=before: status(url, "phoenix")["completed"] >= min(c - 10, b + 8), 60, "progress",
                     every=0.1)
            time.sleep(rng.uniform(0.0, 0.3))
            server.kill()
            time.sleep(rng.uniform(0.1, 0.4))  # down: the workers' calls fail and back off
            server.start()
        summaries = [w.join(120) for w in workers]
        assert server.stop() == 0
    finally:
        for w in workers:
            w.loop.request_stop()
        server.stop()
    assert server.starts == kills + 1
    assert all(s.exit_reason == "done" for s in summaries), summaries
    # The workers saw the server go away and came back (UNAVAILABLE, then success).
    assert sum(w.client.codes()[grpc.StatusCode.UNAVAILABLE] for w in workers) >= 1
    # A report committed just before a kill is answered after the restart with ALREADY_EXISTS (dropped
    # by the worker): the server never counts an evaluation twice.
    accepted = sum(s.evaluated for s in summaries)
    assert c - 3 * kills <= accepted <= c, summaries
    outcome = check_invariants(url, "phoenix")
    assert outcome.lost == 0 and outcome.duplicates == 0


@pytest.mark.postgres
def test_a_postgresql_restart_makes_the_server_unavailable_then_it_recovers_by_itself(
        pg_server: Any, pg_url: str) -> None:
    c = 60
    create_experiment(pg_url, experiment_config("dbdown", evaluations=c, population=8, lease_timeout_s=3.0,
                                                sleep_s=(0.01, 0.05)))
    service = open_service(pg_url)
    running = start(service, ServerConfig(port=0, grace_s=1.0))
    workers = [ThreadWorker(running.address, "dbdown", f"t{k}").start() for k in range(3)]
    channel = grpc.insecure_channel(running.address)
    stub = pb_grpc.OrchestratorStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    try:
        with opened_service(pg_url) as svc:
            wait_for(lambda: svc.status("dbdown")["completed"] >= 10, 60, "progress")
        pg_server.stop()
        try:
            down = time.monotonic()
            for call, request in ((stub.ListExperiments, pb.ListExperimentsRequest()),
                                  (stub.GetStatus, pb.GetStatusRequest(experiment="dbdown")),
                                  (stub.LeaseWork, pb.LeaseWorkRequest(worker=pb.WorkerInfo(worker_id="probe"),
                                                                       experiment="dbdown"))):
                with pytest.raises(grpc.RpcError) as info:
                    call(request, timeout=20)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
                assert "database unavailable" in info.value.details()
            reply = health.Check(health_pb2.HealthCheckRequest(service="amoeba.v1.Orchestrator"), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            # The workers keep trying (with backoff) while the database is away.
            wait_for(lambda: sum(w.client.codes()[grpc.StatusCode.UNAVAILABLE] for w in workers) >= 3, 30,
                     "workers to see the outage")
            time.sleep(max(0.0, 1.0 - (time.monotonic() - down)))
        finally:
            pg_server.start()
        # Same server process, same service object: it reconnects on the next calls.
        wait_for(lambda: _serving(health), 30, "health to turn SERVING again")
        stub.ListExperiments(pb.ListExperimentsRequest(), timeout=20)
        summaries = [w.join(120) for w in workers]
    finally:
        for w in workers:
            w.loop.request_stop()
        channel.close()
        running.stop(1.0)
        service.store.close()
    assert all(s.exit_reason == "done" for s in summaries), summaries
    assert c - 3 <= sum(s.evaluated for s in summaries) <= c
    outcome = check_invariants(pg_url, "dbdown")
    assert outcome.lost == 0 and outcome.duplicates == 0


def _serving(health: Any) -> bool:
    reply = health.Check(health_pb2.HealthCheckRequest(service="amoeba.v1.Orchestrator"), timeout=10)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
