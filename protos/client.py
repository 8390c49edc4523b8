"""The gRPC client of amoeba.v1.Orchestrator: one channel with keepalive, bearer token and TLS; domain
values in and out through the codec, and the server's status codes back as the same domain errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc

from domain import Experiment, ExperimentSpec, Lease, Metrics, NoWork, Page, Progress, ProgressAnswer, WorkerInfo
from domain.status import StatusSnapshot
from protos import codec
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc
from protos.errors import error_for_rpc

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """PEM bytes: the CA that signed the server's certificate, and a client certificate for mTLS."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # override the name checked against the server certificate

    @classmethod
    def from_files(
        cls, ca: str | Path | None, cert: str | Path | None = None, key: str | Path | None = None,
        server_name: str | None = None,
    ) -> ClientTLS:
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs both --tls-cert and --tls-key")

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca), read(cert), read(key), server_name)


def _decode_next(response: Any, oneof: str) -> Lease | NoWork | None:
    which = response.WhichOneof(oneof)
    if which == "work":
        return codec.decode_work(response.work)
    if which == "no_work":
        return codec.decode_no_work(response.no_work)
    return None


class OrchestratorClient:
    """Blocking calls to the orchestrator, with the methods and errors of ``OrchestratorService``.

    Every method raises a ``domain`` error on failure: ``Unavailable`` when the server cannot be reached
    (or answers too late), which callers may retry with backoff; the use case's own errors otherwise.
    """

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
            creds = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key,
                                                 certificate_chain=tls.cert)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.OrchestratorStub(self._channel)  # type: ignore[no-untyped-call]  # generated
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._timeout = rpc_timeout_s
        self.address = address

    def _call(self, method: str, request: Any, decode: Callable[[Any], T]) -> T:
        rpc = getattr(self._stub, method)
        try:
            response = rpc(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_for_rpc(exc) from None
        return decode(response)

    # --- work ---------------------------------------------------------------------------------------

    def lease(self, worker: WorkerInfo, experiment: str | None) -> Lease | NoWork:
        request = pb.LeaseWorkRequest(worker=codec.encode_worker(worker))
        if experiment:
            request.experiment = experiment
        result = self._call("LeaseWork", request, lambda r: _decode_next(r, "result"))
        if result is None:
            raise codec.WireError("LeaseWork answered neither work nor no_work")
        return result

    def heartbeat(self, individual_id: int, token: str, worker_id: str) -> float:
        request = pb.HeartbeatRequest(individual_id=individual_id, token=token, worker_id=worker_id)
        return self._call("Heartbeat", request, lambda r: float(r.deadline))

    def report(self, individual_id: int, token: str, worker_id: str, metrics: Metrics,
               lease_next: bool = False) -> Lease | NoWork | None:
        request = pb.ReportResultRequest(individual_id=individual_id, token=token, worker_id=worker_id,
                                         metrics=codec.encode_metrics(metrics), lease_next=lease_next)
        return self._call("ReportResult", request, lambda r: _decode_next(r, "next"))

    def progress(self, individual_id: int, token: str, worker_id: str, progress: Progress) -> ProgressAnswer:
        request = pb.ReportProgressRequest(individual_id=individual_id, token=token, worker_id=worker_id,
                                           progress=codec.encode_progress(progress))
        return self._call("ReportProgress", request, lambda r: ProgressAnswer(bool(r.stop), r.reason))

    def fail(self, individual_id: int, token: str, worker_id: str, reason: str, retryable: bool = False) -> None:
        request = pb.ReportFailureRequest(individual_id=individual_id, token=token, worker_id=worker_id,
                                          reason=reason, retryable=retryable)
        self._call("ReportFailure", request, lambda r: None)

    def release(self, individual_id: int, token: str, worker_id: str) -> None:
        request = pb.ReleaseLeaseRequest(individual_id=individual_id, token=token, worker_id=worker_id)
        self._call("ReleaseLease", request, lambda r: None)

    # --- experiments and views ------------------------------------------------------------------------

    def create_experiment(self, spec: ExperimentSpec) -> Experiment:
        request = pb.CreateExperimentRequest(spec=codec.encode_spec(spec))
        return self._call("CreateExperiment", request, lambda r: codec.decode_experiment(r.experiment))

    def get_experiment(self, name: str) -> Experiment:
        return self._call("GetExperiment", pb.GetExperimentRequest(name=name),
                          lambda r: codec.decode_experiment(r.experiment))

    def list_experiments(self) -> list[Experiment]:
        return self._call("ListExperiments", pb.ListExperimentsRequest(),
                          lambda r: [codec.decode_experiment(m) for m in r.experiments])

    def pause(self, name: str, reason: str = "") -> Experiment:
        return self._call("PauseExperiment", pb.PauseExperimentRequest(name=name, reason=reason),
                          lambda r: codec.decode_experiment(r.experiment))

    def resume(self, name: str) -> Experiment:
        return self._call("ResumeExperiment", pb.ResumeExperimentRequest(name=name),
                          lambda r: codec.decode_experiment(r.experiment))

    def status(self, experiment: str) -> StatusSnapshot:
        doc = self._call("GetStatus", pb.GetStatusRequest(experiment=experiment),
                         lambda r: codec.loads_object(r.status_json, "status_json"))
        return cast(StatusSnapshot, doc)

    def list_individuals(self, experiment: str, page_size: int = 0, page_token: str = "",
                         state: str | None = None) -> Page:
        request = pb.ListIndividualsRequest(experiment=experiment, page_size=page_size, page_token=page_token)
        if state is not None:
            request.state = state
        return self._call("ListIndividuals", request, lambda r: Page(
            tuple(codec.decode_individual(i) for i in r.individuals), r.next_page_token))

    def wait_ready(self, timeout: float) -> None:
        """Block until the channel connects (raises ``grpc.FutureTimeoutError`` after ``timeout``)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
