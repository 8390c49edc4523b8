"""The one converter between amoeba.v1 wire messages and the domain values of the orchestrator and worker.

The codec sits below both the orchestrator and the worker, so it cannot import their value classes:
encoders read values by attribute (the Protocols below name what they read) and decoders build values
with the class the caller passes (``into``). Every field mapping lives here and nowhere else.
JSON-carrying fields are parsed here; a malformed message raises ``WireError`` (INVALID_ARGUMENT).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from protos.amoeba.v1 import orchestrator_pb2 as pb

T = TypeVar("T")


class WireError(ValueError):
    """A message that cannot be decoded (bad JSON, missing required field)."""


# --- what encoders read -------------------------------------------------------------------------------


class SpecLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def space(self) -> str: ...
    @property
    def population_size(self) -> int: ...
    @property
    def sample_size(self) -> int: ...
    @property
    def evaluations(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def mutation(self) -> dict[str, Any]: ...
    @property
    def objective(self) -> dict[str, Any]: ...
    @property
    def training(self) -> dict[str, Any]: ...
    @property
    def lease_timeout_s(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...



class ExperimentLike(Protocol):
    @property
    def spec(self) -> Any: ...
    @property
    def id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def proposals(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def rejected(self) -> int: ...



class LeaseLike(Protocol):
    @property
    def experiment(self) -> str: ...
    @property
    def individual_id(self) -> int: ...
    @property
    def proposal_seq(self) -> int: ...
    @property
    def token(self) -> str: ...
    @property
    def deadline(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def genome(self) -> dict[str, Any]: ...
    @property
    def space(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def training(self) -> dict[str, Any]: ...
    @property
    def parent_seq(self) -> int | None: ...
    @property
    def mutation(self) -> str: ...



class NoWorkLike(Protocol):
    @property
    def done(self) -> bool: ...
    @property
    def retry_after_s(self) -> float: ...
    @property
    def message(self) -> str: ...



class MetricsLike(Protocol):
    @property
    def accuracy(self) -> float: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def params(self) -> int | None: ...
    @property
    def mult_adds(self) -> int | None: ...
    @property
    def train_seconds(self) -> float: ...
    @property
    def compile_seconds(self) -> float: ...
    @property
    def fits_on_chip(self) -> bool | None: ...



class WorkerLike(Protocol):
    @property
    def worker_id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def evaluator(self) -> str: ...



# --- JSON fields ----------------------------------------------------------------------------------


def dumps(obj: Any) -> str:
    # Canonical form (sorted keys, no whitespace) so equal values give equal bytes on the wire.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def loads_object(text: str, what: str, default: dict[str, Any] | None = None) -> dict[str, Any]:
    if not text:
        if default is not None:
            return dict(default)
        raise WireError(f"{what} is required")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise WireError(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise WireError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _set_opt(msg: Any, name: str, value: Any) -> None:
    if value is not None:
        setattr(msg, name, value)


# --- experiments --------------------------------------------------------------------------------------


def encode_spec(spec: SpecLike) -> pb.ExperimentSpec:
    return pb.ExperimentSpec(
        name=spec.name,
        space=spec.space,
        population_size=spec.population_size,
        sample_size=spec.sample_size,
        evaluations=spec.evaluations,
        seed=spec.seed,
        algorithm=spec.algorithm,
        mutation_json=dumps(spec.mutation),
        objective_json=dumps(spec.objective),
        training_json=dumps(spec.training),
        lease_timeout_s=spec.lease_timeout_s,
        max_attempts=spec.max_attempts,
    )


def decode_spec(msg: pb.ExperimentSpec, into: Callable[..., T]) -> T:
    if not msg.name:
        raise WireError("experiment spec needs a name")
    return into(
        name=msg.name,
        space=msg.space,
        population_size=msg.population_size,
        sample_size=msg.sample_size,
        evaluations=msg.evaluations,
        seed=msg.seed,
        algorithm=msg.algorithm or "aging",
        mutation=loads_object(msg.mutation_json, "mutation_json", {}),
        objective=loads_object(msg.objective_json, "objective_json", {"kind": "accuracy"}),
        training=loads_object(msg.training_json, "training_json", {}),
        lease_timeout_s=msg.lease_timeout_s,
        max_attempts=msg.max_attempts,
    )


def encode_experiment(exp: ExperimentLike) -> pb.Experiment:
    return pb.Experiment(
        id=exp.id,
        spec=encode_spec(exp.spec),
        state=exp.state,
        created_at=exp.created_at,
        proposals=exp.proposals,
        completed=exp.completed,
        failed=exp.failed,
        rejected=exp.rejected,
    )


def decode_experiment(msg: pb.Experiment, into: Callable[..., T], spec_into: Callable[..., Any]) -> T:
    return into(
        id=msg.id,
        spec=decode_spec(msg.spec, spec_into),
        state=msg.state,
        created_at=msg.created_at,
        proposals=msg.proposals,
        completed=msg.completed,
        failed=msg.failed,
        rejected=msg.rejected,
    )


# --- workers, leases, metrics -------------------------------------------------------------------------


def encode_worker(worker: WorkerLike) -> pb.WorkerInfo:
    return pb.WorkerInfo(worker_id=worker.worker_id, host=worker.host, evaluator=worker.evaluator)


def decode_worker(msg: pb.WorkerInfo, into: Callable[..., T]) -> T:
    if not msg.worker_id:
        raise WireError("worker.worker_id is required")
    return into(worker_id=msg.worker_id, host=msg.host, evaluator=msg.evaluator)


def encode_work(lease: LeaseLike) -> pb.Work:
    work = pb.Work(
        experiment=lease.experiment,
        individual_id=lease.individual_id,
        proposal_seq=lease.proposal_seq,
        token=lease.token,
        deadline=lease.deadline,
        attempt=lease.attempt,
        genome_json=dumps(lease.genome),
        space=lease.space,
        seed=lease.seed,
        training_json=dumps(lease.training),
        mutation=lease.mutation,
    )
    _set_opt(work, "parent_seq", lease.parent_seq)
    return work


def decode_work(msg: pb.Work, into: Callable[..., T]) -> T:
    """Build a lease value (any class with the fields of ``orchestrator.domain.Lease``)."""
    return into(
        experiment=msg.experiment,
        individual_id=msg.individual_id,
        proposal_seq=msg.proposal_seq,
        token=msg.token,
        deadline=msg.deadline,
        attempt=msg.attempt,
        genome=loads_object(msg.genome_json, "genome_json"),
        space=msg.space,
        seed=msg.seed,
        training=loads_object(msg.training_json, "training_json", {}),
        parent_seq=_opt(msg, "parent_seq"),
        mutation=msg.mutation,
    )


def encode_no_work(no_work: NoWorkLike) -> pb.NoWork:
    return pb.NoWork(done=no_work.done, retry_after_s=no_work.retry_after_s, message=no_work.message)


def decode_no_work(msg: pb.NoWork, into: Callable[..., T]) -> T:
    return into(done=msg.done, retry_after_s=msg.retry_after_s, message=msg.message)


def encode_metrics(metrics: MetricsLike) -> pb.Metrics:
    msg = pb.Metrics(
        accuracy=metrics.accuracy,
        train_seconds=metrics.train_seconds,
        compile_seconds=metrics.compile_seconds,
    )
    _set_opt(msg, "latency_ms", metrics.latency_ms)
    _set_opt(msg, "params", metrics.params)
    _set_opt(msg, "mult_adds", metrics.mult_adds)
    _set_opt(msg, "fits_on_chip", metrics.fits_on_chip)
    return msg


def decode_metrics(msg: pb.Metrics, into: Callable[..., T]) -> T:
    # Range checks belong to the service; the codec only refuses what cannot be a number at all.
    values = (msg.accuracy, msg.train_seconds, msg.compile_seconds, _opt(msg, "latency_ms"))
    if any(v is not None and math.isnan(v) for v in values):
        raise WireError("metrics must not be NaN")
    return into(
        accuracy=msg.accuracy,
        latency_ms=_opt(msg, "latency_ms"),
        params=_opt(msg, "params"),
        mult_adds=_opt(msg, "mult_adds"),
        train_seconds=msg.train_seconds,
        compile_seconds=msg.compile_seconds,
        fits_on_chip=_opt(msg, "fits_on_chip"),
    )


# --- individuals --------------------------------------------------------------------------------------

_INDIVIDUAL_OPTIONAL = (
    "parent_seq", "fitness", "accuracy", "latency_ms", "params", "mult_adds", "train_seconds",
    "compile_seconds", "lease_owner", "lease_deadline", "failure_reason", "completed_at", "completion_rank",
)


def encode_individual(ind: Any) -> pb.Individual:
    msg = pb.Individual(
        id=ind.id,
        experiment=ind.experiment,
        proposal_seq=ind.proposal_seq,
        genome_json=dumps(ind.genome),
        fingerprint=ind.fingerprint,
        mutation=ind.mutation,
        state=ind.state,
        attempts=ind.attempts,
        created_at=ind.created_at,
        in_population=ind.in_population,
    )
    for name in _INDIVIDUAL_OPTIONAL:
        _set_opt(msg, name, getattr(ind, name))
    return msg


def decode_individual(msg: pb.Individual, into: Callable[..., T]) -> T:
    optional = {name: _opt(msg, name) for name in _INDIVIDUAL_OPTIONAL}
    return into(
        id=msg.id,
        experiment=msg.experiment,
        proposal_seq=msg.proposal_seq,
        genome=loads_object(msg.genome_json, "genome_json"),
        fingerprint=msg.fingerprint,
        mutation=msg.mutation,
        state=msg.state,
        attempts=msg.attempts,
        created_at=msg.created_at,
        in_population=msg.in_population,
        **optional,
    )


def encode_individuals(individuals: Iterable[Any], next_page_token: str) -> pb.ListIndividualsResponse:
    return pb.ListIndividualsResponse(
        individuals=[encode_individual(i) for i in individuals], next_page_token=next_page_token
    )
