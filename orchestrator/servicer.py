"""The gRPC servicer: decode the request, call the service, encode the answer. Nothing else.

Domain errors become status codes through the one table in ``protos.errors`` (the client maps them back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from domain import DomainError, Lease, NoWork, Unavailable
from orchestrator.service import OrchestratorService
from protos import codec
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc
from protos.errors import status_for_error

log = logging.getLogger(__name__)
R = TypeVar("R", pb.LeaseWorkResponse, pb.ReportResultResponse)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Orchestrator"].full_name  # "amoeba.v1.Orchestrator"

DEFAULT_PAGE_SIZE = 100
MAX_DETAILS = 1000
MAX_PAGE_SIZE = 1000


def _lease_into(response: R, result: Lease | NoWork | None) -> R:
    if isinstance(result, Lease):
        response.work.CopyFrom(codec.encode_work(result))
    elif isinstance(result, NoWork):
        response.no_work.CopyFrom(codec.encode_no_work(result))
    return response


class OrchestratorServicer(pb_grpc.OrchestratorServicer):
    """amoeba.v1.Orchestrator over an ``OrchestratorService``; handlers are synchronous (the service is)."""

    def __init__(self, service: OrchestratorService, on_database: Callable[[bool], None] | None = None) -> None:
        self._service = service
        # Told after each call whether the database answered (the server turns health NOT_SERVING on False).
        self._on_database = on_database or (lambda _available: None)

    def _run(self, context: grpc.ServicerContext, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except DomainError as exc:
            self._on_database(not isinstance(exc, Unavailable))
            self._abort(context, status_for_error(exc), str(exc))
        except codec.WireError as exc:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:
            log.exception("unexpected error in %s", getattr(call, "__name__", "rpc"))
            self._abort(context, grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log")
        self._on_database(True)
        return result

    @staticmethod
    def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
        # Details travel in a trailer; one that quotes a huge hostile value would exceed the client's
        # metadata limit and turn a precise status into an opaque transport error.
        if len(message) > MAX_DETAILS:
            message = message[:MAX_DETAILS] + "..."
        context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    # --- experiments ------------------------------------------------------------------------------

    def CreateExperiment(self, request: pb.CreateExperimentRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.CreateExperimentResponse:
            spec = codec.decode_spec(request.spec)
            return pb.CreateExperimentResponse(experiment=codec.encode_experiment(self._service.create_experiment(spec)))

        return self._run(context, call)

    def GetExperiment(self, request: pb.GetExperimentRequest, context: grpc.ServicerContext) -> Any:
        return self._run(
            context,
            lambda: pb.GetExperimentResponse(experiment=codec.encode_experiment(self._service.get_experiment(request.name))),
        )

    def ListExperiments(self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext) -> Any:
        return self._run(
            context,
            lambda: pb.ListExperimentsResponse(
                experiments=[codec.encode_experiment(e) for e in self._service.list_experiments()]
            ),
        )

    # --- work ---------------------------------------------------------------------------------------

    def LeaseWork(self, request: pb.LeaseWorkRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.LeaseWorkResponse:
            worker = codec.decode_worker(request.worker)
            experiment = request.experiment if request.HasField("experiment") else None
            return _lease_into(pb.LeaseWorkResponse(), self._service.lease(worker, experiment))

        return self._run(context, call)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> Any:
        return self._run(
            context,
            lambda: pb.HeartbeatResponse(
                deadline=self._service.heartbeat(request.individual_id, request.token, request.worker_id)
            ),
        )

    def ReportResult(self, request: pb.ReportResultRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.ReportResultResponse:
            if not request.HasField("metrics"):
                raise codec.WireError("metrics are required")
            metrics = codec.decode_metrics(request.metrics)
            result = self._service.report(
                request.individual_id, request.token, request.worker_id, metrics, lease_next=request.lease_next
            )
            return _lease_into(pb.ReportResultResponse(), result if request.lease_next else None)

        return self._run(context, call)

    def ReportFailure(self, request: pb.ReportFailureRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.ReportFailureResponse:
            self._service.fail(request.individual_id, request.token, request.worker_id, request.reason, request.retryable)
            return pb.ReportFailureResponse()

        return self._run(context, call)

    def ReleaseLease(self, request: pb.ReleaseLeaseRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.ReleaseLeaseResponse:
            self._service.release(request.individual_id, request.token, request.worker_id)
            return pb.ReleaseLeaseResponse()

        return self._run(context, call)

    def ReportProgress(self, request: pb.ReportProgressRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.ReportProgressResponse:
            if not request.HasField("progress"):
                raise codec.WireError("progress is required")
            answer = self._service.progress(request.individual_id, request.token, request.worker_id,
                                            codec.decode_progress(request.progress))
            return pb.ReportProgressResponse(stop=answer.stop, reason=answer.reason)

        return self._run(context, call)

    def PauseExperiment(self, request: pb.PauseExperimentRequest, context: grpc.ServicerContext) -> Any:
        return self._run(context, lambda: pb.PauseExperimentResponse(
            experiment=codec.encode_experiment(self._service.pause(request.name, request.reason))))

    def ResumeExperiment(self, request: pb.ResumeExperimentRequest, context: grpc.ServicerContext) -> Any:
        return self._run(context, lambda: pb.ResumeExperimentResponse(
            experiment=codec.encode_experiment(self._service.resume(request.name))))

    # --- inspection ---------------------------------------------------------------------------------

    def GetStatus(self, request: pb.GetStatusRequest, context: grpc.ServicerContext) -> Any:
        return self._run(
            context, lambda: pb.GetStatusResponse(status_json=codec.dumps(self._service.status(request.experiment)))
        )

    def ListIndividuals(self, request: pb.ListIndividualsRequest, context: grpc.ServicerContext) -> Any:
        def call() -> pb.ListIndividualsResponse:
            if request.page_size < 0:
                raise codec.WireError(f"page_size must be >= 0, got {request.page_size}")
            size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            state = request.state if request.HasField("state") else None
            page = self._service.list_individuals(request.experiment, size, request.page_token, state)
            return codec.encode_individuals(page.individuals, page.next_page_token)

        return self._run(context, call)
