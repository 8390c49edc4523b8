"""The worker's gRPC client: one channel with keepalive, bearer token and TLS; wire <-> worker values via the codec."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from protos import codec
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc
from worker.evaluator import Metrics, WorkItem

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# Status codes after which the same call may succeed later (server restarting, network blip, overload).
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True, slots=True)
class WorkLease:
    """A leased individual with the lease details the loop needs (fields as in ``orchestrator.domain.Lease``)."""

    experiment: str
    individual_id: int
    proposal_seq: int
    token: str
    deadline: float
    attempt: int
    genome: dict[str, Any]
    space: str
    seed: int
    training: dict[str, Any] = field(default_factory=dict)
    parent_seq: int | None = None
    mutation: str = ""

    def item(self) -> WorkItem:
        return WorkItem(
            experiment=self.experiment,
            individual_id=self.individual_id,
            proposal_seq=self.proposal_seq,
            space=self.space,
            genome=self.genome,
            seed=self.seed,
            training=self.training,
            attempt=self.attempt,
        )


@dataclass(frozen=True, slots=True)
class NoWorkNow:
    """Nothing to do now; ``done`` when the experiment (or every experiment) has ended."""

    done: bool
    retry_after_s: float = 1.0
    message: str = ""


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    worker_id: str
    host: str = ""
    evaluator: str = ""


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """PEM bytes: the CA that signed the server's certificate, and a client certificate for mTLS."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # override the name checked against the server certificate

    @classmethod
    def from_files(
        cls, ca: str | Path | None, cert: str | Path | None = None, key: str | Path | None = None, server_name: str | None = None
    ) -> ClientTLS:
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs both --tls-cert and --tls-key")

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca), read(cert), read(key), server_name)


def _decode_next(response: Any, oneof: str) -> WorkLease | NoWorkNow | None:
    which = response.WhichOneof(oneof)
    if which == "work":
        return codec.decode_work(response.work, WorkLease)
    if which == "no_work":
        return codec.decode_no_work(response.no_work, NoWorkNow)
    return None


class OrchestratorClient:
    """Blocking calls to amoeba.v1.Orchestrator. Errors are ``grpc.RpcError`` (the loop decides what is transient)."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls: ClientTLS | None = None,
        rpc_timeout_s: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Keepalive notices a dead server (or a NAT that dropped us) while an evaluation runs for hours.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Our own loop does the retrying with backoff; keep the channel's reconnect backoff short too.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ]
        if tls is not None:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            creds = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.OrchestratorStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._timeout = rpc_timeout_s
        self.address = address

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        rpc = getattr(self._stub, method)
        return rpc(request, timeout=timeout or self._timeout, metadata=self._metadata)

    # --- work ---------------------------------------------------------------------------------------

    def lease(self, worker: WorkerIdentity, experiment: str | None) -> WorkLease | NoWorkNow:
        request = pb.LeaseWorkRequest(worker=codec.encode_worker(worker))
        if experiment:
            request.experiment = experiment
        result = _decode_next(self._call("LeaseWork", request), "result")
        if result is None:
            raise codec.WireError("LeaseWork answered neither work nor no_work")
        return result

    def heartbeat(self, lease: WorkLease, worker_id: str) -> float:
        request = pb.HeartbeatRequest(individual_id=lease.individual_id, token=lease.token, worker_id=worker_id)
        return float(self._call("Heartbeat", request).deadline)

    def report(self, lease: WorkLease, worker_id: str, metrics: Metrics, lease_next: bool) -> WorkLease | NoWorkNow | None:
        request = pb.ReportResultRequest(
            individual_id=lease.individual_id,
            token=lease.token,
            worker_id=worker_id,
            metrics=codec.encode_metrics(metrics),
            lease_next=lease_next,
        )
        return _decode_next(self._call("ReportResult", request), "next")

    def fail(self, lease: WorkLease, worker_id: str, reason: str, retryable: bool) -> None:
        request = pb.ReportFailureRequest(
            individual_id=lease.individual_id, token=lease.token, worker_id=worker_id, reason=reason, retryable=retryable
        )
        self._call("ReportFailure", request)

    def release(self, lease: WorkLease, worker_id: str) -> None:
        request = pb.ReleaseLeaseRequest(individual_id=lease.individual_id, token=lease.token, worker_id=worker_id)
        self._call("ReleaseLease", request)

    # --- administration (messages as they come; callers decode with the codec) ---------------------------

    def create_experiment(self, spec: pb.ExperimentSpec) -> pb.Experiment:
        return self._call("CreateExperiment", pb.CreateExperimentRequest(spec=spec)).experiment

    def get_experiment(self, name: str) -> pb.Experiment:
        return self._call("GetExperiment", pb.GetExperimentRequest(name=name)).experiment

    def list_experiments(self) -> list[pb.Experiment]:
        return list(self._call("ListExperiments", pb.ListExperimentsRequest()).experiments)

    def status(self, experiment: str) -> dict[str, Any]:
        return codec.loads_object(self._call("GetStatus", pb.GetStatusRequest(experiment=experiment)).status_json, "status_json")

    def list_individuals(
        self, experiment: str, page_size: int = 0, page_token: str = "", state: str | None = None
    ) -> pb.ListIndividualsResponse:
        request = pb.ListIndividualsRequest(experiment=experiment, page_size=page_size, page_token=page_token)
        if state is not None:
            request.state = state
        return self._call("ListIndividuals", request)

    def wait_ready(self, timeout: float) -> None:
        """Block until the channel connects (raises ``grpc.FutureTimeoutError`` after ``timeout``)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
