"""One table between domain errors and gRPC status codes, used in both directions (server and client)."""

from __future__ import annotations

import grpc

from domain import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)

STATUS_OF_ERROR: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}
ERROR_OF_STATUS: dict[grpc.StatusCode, type[DomainError]] = {code: err for err, code in STATUS_OF_ERROR.items()}
# The server could not answer in time, or is overloaded: like an unreachable server, worth a retry later.
ERROR_OF_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] = Unavailable
ERROR_OF_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED] = Unavailable


class RemoteError(DomainError):
    """A status code with no domain meaning (INTERNAL, UNIMPLEMENTED, ...): the server's message as is."""


def status_for_error(exc: DomainError) -> grpc.StatusCode:
    # Walk the MRO so a service's own subclasses (e.g. LeaseExpired(FailedPrecondition)) map too.
    for cls in type(exc).__mro__:
        if cls in STATUS_OF_ERROR:
            return STATUS_OF_ERROR[cls]
    return grpc.StatusCode.UNKNOWN


def error_for_status(code: grpc.StatusCode, message: str) -> DomainError:
    """The domain error a status code stands for (``RemoteError`` for codes without one); its ``code``
    attribute keeps the status code's name for messages."""
    error = ERROR_OF_STATUS.get(code, RemoteError)(message)
    error.code = code.name  # type: ignore[attr-defined]
    return error


def error_for_rpc(exc: grpc.RpcError) -> DomainError:
    """The domain error of a failed call (``grpc.RpcError`` raised by a stub)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return error_for_status(code, details or code.name)
