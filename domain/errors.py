"""One root for every expected failure (``AmoebaError``) and the use-case errors that map to gRPC codes."""

from __future__ import annotations


class AmoebaError(Exception):
    """A failure Amoeba expects and explains: the message is one complete line for the user.

    Every package's own errors derive from it (genome, mutation, objective, store, config, wire, ...),
    so the command line turns any of them into one line and a non-zero exit without knowing the
    packages, and anything that is *not* an AmoebaError is a bug worth a traceback in the log.
    """


class DomainError(AmoebaError):
    """Base of the errors a use case raises on purpose; one table maps each subclass to a gRPC code."""


class InvalidArgument(DomainError):
    """The request is malformed (bad genome, NaN metric, empty name, ...). INVALID_ARGUMENT."""


class NotFound(DomainError):
    """Unknown experiment, individual or lease. NOT_FOUND."""


class AlreadyExists(DomainError):
    """Duplicate experiment name, or a report for an individual that already has its outcome. ALREADY_EXISTS."""


class FailedPrecondition(DomainError):
    """Late or foreign report (expired lease, token re-issued), experiment not running. FAILED_PRECONDITION."""


class Unauthenticated(DomainError):
    """Missing or wrong credentials. UNAUTHENTICATED."""


class Unavailable(DomainError):
    """The database or the server cannot be reached right now; retry with backoff. UNAVAILABLE."""
