"""The values and errors every layer shares: experiments, leases, metrics, typed events, one error root."""

from domain.errors import (
    AlreadyExists,
    AmoebaError,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from domain.values import (
    Experiment,
    ExperimentSpec,
    ExperimentState,
    Individual,
    IndividualState,
    Lease,
    Metrics,
    NoWork,
    Page,
    Progress,
    ProgressAnswer,
    WorkerInfo,
)

__all__ = [
    "AlreadyExists",
    "AmoebaError",
    "DomainError",
    "Experiment",
    "ExperimentSpec",
    "ExperimentState",
    "FailedPrecondition",
    "Individual",
    "IndividualState",
    "InvalidArgument",
    "Lease",
    "Metrics",
    "NoWork",
    "NotFound",
    "Page",
    "Progress",
    "ProgressAnswer",
    "Unauthenticated",
    "Unavailable",
    "WorkerInfo",
]
