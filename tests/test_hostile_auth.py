"""Letting no one in: with a token configured every RPC without it or with a wrong one is UNAUTHENTICATED (health
checks excepted) and changes nothing; with TLS a plaintext client is refused; with mutual TLS a client without a
valid certificate (none, signed by another CA, a key that is not the certificate's) is refused. Certificates are made in the test."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from chaos_helpers import certificates, create_experiment, experiment_config, snapshot
from grpc_health.v1 import health_pb2, health_pb2_grpc

from db.engine import make_engine
from domain import DomainError, Unavailable
from orchestrator.server import RunningServer, ServerConfig, TLSConfig, start
from orchestrator.service import OrchestratorService, open_service
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.client import ClientTLS, OrchestratorClient

pytestmark = pytest.mark.grpc

TOKEN = "c0ffee-5ecret-t0ken"
METHODS = [(m.name, getattr(pb, m.input_type.name)) for m in pb.DESCRIPTOR.services_by_name["Orchestrator"].methods]
WRONG = [
    None, (("authorization", "Bearer nope"),), (("authorization", f"Bearer {TOKEN}x"),),
    (("authorization", f"Bearer {TOKEN[:-1]}"),), (("authorization", TOKEN),), (("authorization", f"bearer {TOKEN}"),),
    (("authorization", f"Bearer  {TOKEN}"),), (("authorization", "Bearer "),), (("authorization", ""),),
    (("x-token", f"Bearer {TOKEN}"),), (("authorization", f"Basic {TOKEN}"),),
]


@pytest.fixture
def service(sqlite_url: str) -> Iterator[OrchestratorService]:
    create_experiment(sqlite_url, experiment_config("exp", evaluations=4, population=2, sample=1))
    svc = open_service(sqlite_url)
    yield svc
    svc.store.close()


def serve(service: OrchestratorService, **kw: object) -> RunningServer:
    return start(service, ServerConfig(port=0, grace_s=0.5, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["aio", "sync"])
def test_every_rpc_without_the_token_or_with_a_wrong_one_is_unauthenticated(
        service: OrchestratorService, sqlite_url: str, mode: str) -> None:
    running = serve(service, token=TOKEN, mode=mode)
    engine = make_engine(sqlite_url)
    try:
        before = snapshot(engine)
        with grpc.insecure_channel(running.address) as channel:
            for name, request_type in METHODS:
                call = channel.unary_unary(f"/amoeba.v1.Orchestrator/{name}", request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
                # A well-formed request (a lease for the running experiment where it has fields) and raw garbage.
                request = request_type()
                if name == "LeaseWork":
                    request = pb.LeaseWorkRequest(worker=pb.WorkerInfo(worker_id="intruder"), experiment="exp")
                for payload in (request.SerializeToString(), b"\xff\x00garbage"):
                    for metadata in WRONG:
                        with pytest.raises(grpc.RpcError) as info:
                            call(payload, timeout=10, metadata=metadata)
                        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, metadata, info.value)
            # Health checks stay open for probes, without a token.
            health = health_pb2_grpc.HealthStub(channel)
            for svc_name in ("", "amoeba.v1.Orchestrator"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=svc_name), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert snapshot(engine) == before  # nobody got a lease, nothing was written
        # The right token works, for the same request.
        with OrchestratorClient(running.address, token=TOKEN) as client:
            assert [e.spec.name for e in client.list_experiments()] == ["exp"]
    finally:
        running.stop(0.5)
        engine.dispose()


def test_tls_refuses_plaintext_and_mutual_tls_refuses_clients_without_a_valid_certificate(
        service: OrchestratorService) -> None:
    ours, theirs = certificates(), certificates()  # two unrelated CAs
    # TLS without client certificates: a plaintext client and one that does not trust the server are refused.
    running = serve(service, tls=TLSConfig(ours["server"], ours["server_key"]))
    try:
        with OrchestratorClient(running.address, tls=ClientTLS(ours["ca"])) as client:
            assert [e.spec.name for e in client.list_experiments()] == ["exp"]
        for tls in (None, ClientTLS(theirs["ca"])):
            with OrchestratorClient(running.address, tls=tls, rpc_timeout_s=5) as client, \
                    pytest.raises(Unavailable) as info:
                client.list_experiments()
            assert info.value.code == "UNAVAILABLE", tls  # type: ignore[attr-defined]
    finally:
        running.stop(0.5)
    # Mutual TLS: only a certificate signed by the configured client CA gets in.
    running = serve(service, tls=TLSConfig(ours["server"], ours["server_key"], client_ca=ours["ca"]), token=TOKEN)
    try:
        with OrchestratorClient(running.address, token=TOKEN,
                                tls=ClientTLS(ours["ca"], ours["client"], ours["client_key"])) as client:
            assert [e.spec.name for e in client.list_experiments()] == ["exp"]
        refused = {
            "plaintext": None,
            "no certificate": ClientTLS(ours["ca"]),
            "signed by another CA": ClientTLS(ours["ca"], theirs["client"], theirs["client_key"]),
            "the server's own key, mismatched": ClientTLS(ours["ca"], ours["client"], ours["server_key"]),
        }
        for what, tls in refused.items():
            # The refusal comes from the handshake (the call) or, for a key that fits no certificate, the channel.
            with pytest.raises((DomainError, ValueError)) as info, \
                    OrchestratorClient(running.address, token=TOKEN, tls=tls, rpc_timeout_s=5) as client:
                client.list_experiments()
            if isinstance(info.value, DomainError):
                assert isinstance(info.value, Unavailable) and info.value.code == "UNAVAILABLE", what  # type: ignore[attr-defined]
    finally:
        running.stop(0.5)
