"""The gRPC server on a real loopback port: every RPC, status codes, health, reflection, auth, TLS, limits, stop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from builders import spec
from chaos_helpers import certificates, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from domain import (
    AlreadyExists,
    DomainError,
    ExperimentSpec,
    FailedPrecondition,
    InvalidArgument,
    Lease,
    Metrics,
    NotFound,
    NoWork,
    Unavailable,
    WorkerInfo,
)
from orchestrator.server import RunningServer, ServerConfig, TLSConfig, start
from orchestrator.service import OrchestratorService, open_service
from protos import codec
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc
from protos.client import ClientTLS, OrchestratorClient
from protos.errors import ERROR_OF_STATUS, STATUS_OF_ERROR, RemoteError, error_for_status, status_for_error

pytestmark = pytest.mark.grpc

WORKER = pb.WorkerInfo(worker_id="test-1-aaaaaa", host="test", evaluator="table")


def spec_msg(name: str = "exp", evaluations: int = 6) -> pb.ExperimentSpec:
    return codec.encode_spec(spec(name, population=3, sample=2, evaluations=evaluations, seed=1))


class Wrapped:
    """The real (in-memory) service, with a few use cases changed by subclasses."""

    def __init__(self) -> None:
        self.inner = open_service("memory://")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.store.close()


class Gated(Wrapped):
    """Every lease call waits (up to 10 s) for ``go`` before it reaches the service; ``entered`` says one came."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def lease(self, worker: WorkerInfo, experiment: str | None) -> Lease | NoWork:
        self.entered.set()
        self.go.wait(10)
        result: Lease | NoWork = self.inner.lease(worker, experiment)
        return result


@pytest.fixture
def service() -> Iterator[OrchestratorService]:
    svc = open_service("memory://")
    yield svc
    svc.store.close()


def serve(service: Any, **kw: Any) -> RunningServer:
    return start(service, ServerConfig(port=0, grace_s=1.0, **kw))


@pytest.fixture(params=["aio", "sync"])
def server(request: pytest.FixtureRequest, service: OrchestratorService) -> Iterator[RunningServer]:
    running = serve(service, mode=request.param)
    yield running
    running.stop(0.5)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[pb_grpc.OrchestratorStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.OrchestratorStub(channel)


def code_of(call: Any, request: Any, **kw: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10, **kw)
    return info.value.code(), info.value.details()


def test_error_table_maps_both_ways_and_covers_subclasses() -> None:
    # Every domain error has its status and back; DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED also read as
    # Unavailable (a server that answers too late or is overloaded: worth a retry); the table has no others.
    assert set(ERROR_OF_STATUS) == set(STATUS_OF_ERROR.values()) | {grpc.StatusCode.DEADLINE_EXCEEDED,
                                                                     grpc.StatusCode.RESOURCE_EXHAUSTED}
    for err, code in STATUS_OF_ERROR.items():
        got = error_for_status(code, "m")
        assert type(got) is err and got.code == code.name and str(got) == "m"  # type: ignore[attr-defined]
    for code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        got = error_for_status(code, "slow")
        assert type(got) is Unavailable and got.code == code.name  # type: ignore[attr-defined]
    # A status with no domain meaning is a RemoteError that keeps the code's name.
    for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN):
        got = error_for_status(code, "boom")
        assert type(got) is RemoteError and got.code == code.name  # type: ignore[attr-defined]

    class LeaseExpired(FailedPrecondition):
        pass

    assert status_for_error(LeaseExpired("late")) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_whole_experiment_over_the_wire(stub: pb_grpc.OrchestratorStub) -> None:
    created = stub.CreateExperiment(pb.CreateExperimentRequest(spec=spec_msg(evaluations=6)), timeout=10).experiment
    assert (created.spec.name, created.state, created.spec.evaluations) == ("exp", "running", 6)
    reply = stub.LeaseWork(pb.LeaseWorkRequest(worker=WORKER, experiment="exp"), timeout=10)
    assert reply.WhichOneof("result") == "work"
    work = reply.work
    seen = []
    while True:
        assert work.experiment == "exp" and work.attempt == 1 and json.loads(work.genome_json)["space"] == "nb201"
        seen.append(work.proposal_seq)
        beat = stub.Heartbeat(pb.HeartbeatRequest(individual_id=work.individual_id, token=work.token,
                                                  worker_id=WORKER.worker_id), timeout=10)
        assert beat.deadline >= work.deadline
        nxt = stub.ReportResult(pb.ReportResultRequest(
            individual_id=work.individual_id, token=work.token, worker_id=WORKER.worker_id,
            metrics=pb.Metrics(accuracy=0.5 + 0.01 * len(seen), train_seconds=1.0), lease_next=True), timeout=10)
        if nxt.WhichOneof("next") != "work":
            assert nxt.WhichOneof("next") == "no_work" and nxt.no_work.done
            break
        work = nxt.work
    assert seen == list(range(6))
    got = stub.GetExperiment(pb.GetExperimentRequest(name="exp"), timeout=10).experiment
    assert (got.state, got.completed, got.proposals) == ("done", 6, 6)
    status = json.loads(stub.GetStatus(pb.GetStatusRequest(experiment="exp"), timeout=10).status_json)
    assert status["completed"] == 6 and status["state"] == "done"
    assert [e.spec.name for e in stub.ListExperiments(pb.ListExperimentsRequest(), timeout=10).experiments] == ["exp"]
    # Paged listing: 6 individuals in pages of 4, then filtered by state.
    first = stub.ListIndividuals(pb.ListIndividualsRequest(experiment="exp", page_size=4), timeout=10)
    assert len(first.individuals) == 4 and first.next_page_token
    rest = stub.ListIndividuals(pb.ListIndividualsRequest(experiment="exp", page_size=4, page_token=first.next_page_token),
                                timeout=10)
    assert len(rest.individuals) == 2 and rest.next_page_token == ""
    seqs = [i.proposal_seq for i in (*first.individuals, *rest.individuals)]
    assert sorted(seqs) == list(range(6))
    completed = stub.ListIndividuals(pb.ListIndividualsRequest(experiment="exp", state="completed"), timeout=10)
    assert len(completed.individuals) == 6 and all(i.HasField("accuracy") for i in completed.individuals)
    # Lease after the end: done, so workers can exit.
    done = stub.LeaseWork(pb.LeaseWorkRequest(worker=WORKER, experiment="exp"), timeout=10)
    assert done.WhichOneof("result") == "no_work" and done.no_work.done


def test_bad_requests_get_one_clear_status_and_change_nothing(stub: pb_grpc.OrchestratorStub,
                                                               service: OrchestratorService) -> None:
    stub.CreateExperiment(pb.CreateExperimentRequest(spec=spec_msg()), timeout=10)
    code, msg = code_of(stub.CreateExperiment, pb.CreateExperimentRequest(spec=spec_msg()))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "exp" in msg
    bad = spec_msg("other")
    bad.training_json = "{oops"
    assert code_of(stub.CreateExperiment, pb.CreateExperimentRequest(spec=bad))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.GetExperiment, pb.GetExperimentRequest(name="nope"))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.LeaseWork, pb.LeaseWorkRequest(worker=pb.WorkerInfo()))[0] == grpc.StatusCode.INVALID_ARGUMENT
    work = stub.LeaseWork(pb.LeaseWorkRequest(worker=WORKER, experiment="exp"), timeout=10).work
    good = pb.Metrics(accuracy=0.7)

    def report(token: str = work.token, ind: int = work.individual_id, metrics: pb.Metrics = good) -> pb.ReportResultRequest:
        return pb.ReportResultRequest(individual_id=ind, token=token, worker_id=WORKER.worker_id, metrics=metrics)

    before = service.status("exp")
    assert code_of(stub.ReportResult, report(token="forged"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(stub.ReportResult, report(ind=10_000))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.ReportResult, report(metrics=pb.Metrics(accuracy=float("nan"))))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.ReportResult, report(metrics=pb.Metrics(accuracy=1.5)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    no_metrics = pb.ReportResultRequest(individual_id=work.individual_id, token=work.token, worker_id=WORKER.worker_id)
    assert code_of(stub.ReportResult, no_metrics)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.ListIndividuals, pb.ListIndividualsRequest(experiment="exp", page_size=-1))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT)
    after = service.status("exp")
    assert (after["completed"], after["leased"], after["seq"]) == (before["completed"], before["leased"], before["seq"])
    stub.ReportResult(report(), timeout=10)
    assert code_of(stub.ReportResult, report())[0] == grpc.StatusCode.ALREADY_EXISTS
    # Failure and release of a lease, and a heartbeat for a lease that no longer exists.
    w2 = stub.LeaseWork(pb.LeaseWorkRequest(worker=WORKER, experiment="exp"), timeout=10).work
    stub.ReportFailure(pb.ReportFailureRequest(individual_id=w2.individual_id, token=w2.token, worker_id=WORKER.worker_id,
                                               reason="NaN loss"), timeout=10)
    failed = stub.ListIndividuals(pb.ListIndividualsRequest(experiment="exp", state="failed"), timeout=10).individuals
    assert [(i.id, i.failure_reason) for i in failed] == [(w2.individual_id, "NaN loss")]
    w3 = stub.LeaseWork(pb.LeaseWorkRequest(worker=WORKER, experiment="exp"), timeout=10).work
    stub.ReleaseLease(pb.ReleaseLeaseRequest(individual_id=w3.individual_id, token=w3.token, worker_id=WORKER.worker_id),
                      timeout=10)
    hb = pb.HeartbeatRequest(individual_id=w3.individual_id, token=w3.token, worker_id=WORKER.worker_id)
    assert code_of(stub.Heartbeat, hb)[0] == grpc.StatusCode.FAILED_PRECONDITION


class Broken(Wrapped):
    def list_experiments(self) -> list[Any]:
        raise RuntimeError("disk on fire")


def test_unexpected_service_errors_are_internal_not_tracebacks() -> None:
    broken = Broken()
    running = serve(broken)
    try:
        with grpc.insecure_channel(running.address) as channel:
            code, msg = code_of(pb_grpc.OrchestratorStub(channel).ListExperiments, pb.ListExperimentsRequest())
        assert code == grpc.StatusCode.INTERNAL and "RuntimeError" in msg and "disk on fire" not in msg
        # Through the client it is a RemoteError with the code's name, never a grpc.RpcError.
        with OrchestratorClient(running.address, rpc_timeout_s=10) as client, pytest.raises(RemoteError) as info:
            client.list_experiments()
        assert info.value.code == "INTERNAL" and "RuntimeError" in str(info.value)  # type: ignore[attr-defined]
    finally:
        running.stop(0.5)
        broken.close()


def test_the_client_speaks_domain_values_and_raises_domain_errors(server: RunningServer) -> None:
    worker = WorkerInfo("client-1-bbbbbb", "test", "table")
    with OrchestratorClient(server.address, rpc_timeout_s=10) as client:
        created = client.create_experiment(spec("exp", population=3, sample=2, evaluations=3, seed=1))
        assert (created.spec.name, created.state, created.spec.evaluations) == ("exp", "running", 3)
        assert isinstance(created.spec, ExperimentSpec) and client.get_experiment("exp").spec == created.spec
        assert [e.spec.name for e in client.list_experiments()] == ["exp"]
        lease = client.lease(worker, "exp")
        assert isinstance(lease, Lease) and isinstance(lease.genome_json, str)
        assert json.loads(lease.genome_json)["space"] == "nb201" and lease.space == "nb201"
        # The orchestrator priced the child's simulated latency when it proposed it.
        assert lease.latency_ms is not None and lease.latency_ms > 0 and lease.fits_on_chip is not None
        assert client.heartbeat(lease.individual_id, lease.token, worker.worker_id) >= lease.deadline
        nxt = client.report(lease.individual_id, lease.token, worker.worker_id, Metrics(accuracy=0.6), lease_next=True)
        assert isinstance(nxt, Lease) and nxt.proposal_seq == 1
        with pytest.raises(FailedPrecondition) as refused:
            client.heartbeat(nxt.individual_id, "forged", worker.worker_id)
        assert refused.value.code == "FAILED_PRECONDITION"  # type: ignore[attr-defined]
        client.fail(nxt.individual_id, nxt.token, worker.worker_id, "NaN loss")
        third = client.lease(worker, "exp")
        assert isinstance(third, Lease)
        client.release(third.individual_id, third.token, worker.worker_id)
        page = client.list_individuals("exp", page_size=10)
        assert {i.state for i in page.individuals} == {"completed", "failed", "queued"} and page.next_page_token == ""
        assert all(isinstance(i.genome_json, str) for i in page.individuals)
        failed = client.list_individuals("exp", state="failed").individuals
        assert [(i.id, i.failure_reason) for i in failed] == [(nxt.individual_id, "NaN loss")]
        assert client.status("exp")["completed"] == 1
        # Each status code comes back as its domain error, with the code's name.
        expected: list[tuple[Any, type[DomainError], str]] = [
            (lambda: client.get_experiment("nope"), NotFound, "NOT_FOUND"),
            (lambda: client.create_experiment(spec("exp")), AlreadyExists, "ALREADY_EXISTS"),
            (lambda: client.release(third.individual_id, third.token, worker.worker_id), FailedPrecondition,
             "FAILED_PRECONDITION"),
            (lambda: client.report(lease.individual_id, lease.token, worker.worker_id, Metrics(accuracy=0.5)),
             AlreadyExists, "ALREADY_EXISTS"),
            (lambda: client.list_individuals("exp", page_size=-1), InvalidArgument, "INVALID_ARGUMENT"),
            (lambda: client.lease(WorkerInfo(""), "exp"), InvalidArgument, "INVALID_ARGUMENT"),
        ]
        for call, error, code in expected:
            with pytest.raises(error) as info:
                call()
            assert not isinstance(info.value, grpc.RpcError) and info.value.code == code  # type: ignore[attr-defined]
    # Nobody listening: Unavailable (what a worker retries), with the code's name.
    with OrchestratorClient(f"127.0.0.1:{free_port()}", rpc_timeout_s=2) as nobody, \
            pytest.raises(Unavailable) as info:
        nobody.list_experiments()
    assert info.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")  # type: ignore[attr-defined]


def test_health_and_reflection(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "amoeba.v1.Orchestrator"):
            assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == (
                health_pb2.HealthCheckResponse.SERVING)
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=10))
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"amoeba.v1.Orchestrator", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("mode", ["aio", "sync"])
def test_token_auth_exempts_health_only(service: OrchestratorService, mode: str) -> None:
    running = serve(service, token="s3cret", mode=mode)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.OrchestratorStub(channel)
            req = pb.ListExperimentsRequest()
            assert code_of(stub.ListExperiments, req)[0] == grpc.StatusCode.UNAUTHENTICATED
            wrong = (("authorization", "Bearer nope"),)
            assert code_of(stub.ListExperiments, req, metadata=wrong)[0] == grpc.StatusCode.UNAUTHENTICATED
            stub.ListExperiments(req, timeout=10, metadata=(("authorization", "Bearer s3cret"),))
            # Reflection is a streaming method: it is refused too, with the same status.
            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(0.5)


def test_message_size_limit(service: OrchestratorService) -> None:
    running = serve(service, max_message_bytes=64 * 1024)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.OrchestratorStub(channel)
            big = spec_msg()
            big.training_json = json.dumps({"blob": "x" * 100_000})
            assert code_of(stub.CreateExperiment, pb.CreateExperimentRequest(spec=big))[0] == (
                grpc.StatusCode.RESOURCE_EXHAUSTED)
            stub.CreateExperiment(pb.CreateExperimentRequest(spec=spec_msg()), timeout=10)
    finally:
        running.stop(0.5)


# --- TLS ----------------------------------------------------------------------------------------------


def test_tls_and_mutual_tls(service: OrchestratorService) -> None:
    c = certificates()
    running = serve(service, tls=TLSConfig(c["server"], c["server_key"], client_ca=c["ca"]))
    try:
        with OrchestratorClient(running.address, tls=ClientTLS(c["ca"], c["client"], c["client_key"])) as client:
            assert client.list_experiments() == []
        # Without a client certificate the handshake fails: the server requires one.
        with OrchestratorClient(running.address, tls=ClientTLS(c["ca"]), rpc_timeout_s=5) as anonymous, \
                pytest.raises(Unavailable) as info:
            anonymous.list_experiments()
        assert info.value.code == "UNAVAILABLE"  # type: ignore[attr-defined]
        # A plaintext client cannot talk to a TLS server.
        with OrchestratorClient(running.address, rpc_timeout_s=5) as plain, pytest.raises(DomainError):
            plain.list_experiments()
    finally:
        running.stop(0.5)


# --- graceful stop --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["aio", "sync"])
def test_stop_turns_health_off_refuses_new_calls_and_finishes_in_flight_ones(mode: str) -> None:
    fake = Gated()
    fake.create_experiment(spec("exp", population=5, sample=2, evaluations=20))
    running = serve(fake, mode=mode)
    channel = grpc.insecure_channel(running.address)
    stub = pb_grpc.OrchestratorStub(channel)
    stub.ListExperiments(pb.ListExperimentsRequest(), timeout=10)  # connected
    in_flight = stub.LeaseWork.future(pb.LeaseWorkRequest(worker=WORKER, experiment="exp"), timeout=20)
    assert fake.entered.wait(10), "the lease call never reached the service"
    stopper = threading.Thread(target=running.stop, args=(10.0,))
    stopper.start()
    time.sleep(0.3)
    assert stopper.is_alive(), "stop returned while a call was still running"
    with grpc.insecure_channel(running.address) as fresh, pytest.raises(grpc.RpcError):
        pb_grpc.OrchestratorStub(fresh).ListExperiments(pb.ListExperimentsRequest(), timeout=2)
    fake.go.set()
    reply = in_flight.result(timeout=10)
    assert reply.WhichOneof("result") == "work"
    stopper.join(10)
    assert not stopper.is_alive() and running.wait(0)
    channel.close()
    fake.close()


def test_domain_errors_use_the_same_table() -> None:
    assert status_for_error(InvalidArgument("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for_error(NotFound("x")) == grpc.StatusCode.NOT_FOUND
