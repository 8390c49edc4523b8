"""The one converter between amoeba.v1 wire messages and the shared domain values (``domain.values``).

Every field mapping lives here and nowhere else; both the server and the client use it. JSON-carrying
fields are parsed here, except the genome, whose canonical JSON travels unchanged from the database row
to the worker (which parses it once). A malformed message raises ``WireError`` (INVALID_ARGUMENT).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from typing import Any

from domain import Artifact, Experiment, ExperimentSpec, Individual, Lease, Metrics, NoWork, Progress, WorkerInfo
from domain.errors import AmoebaError
from protos.amoeba.v1 import orchestrator_pb2 as pb


class WireError(AmoebaError, ValueError):
    """A message that cannot be decoded (bad JSON, missing required field)."""


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


def encode_spec(spec: ExperimentSpec) -> pb.ExperimentSpec:
    msg = pb.ExperimentSpec(
        name=spec.name,
        space=spec.space,
        population_size=spec.population_size,
        sample_size=spec.sample_size,
        evaluations=spec.evaluations,
        seed=spec.seed,
        algorithm=spec.algorithm,
        algorithm_options_json=dumps(spec.algorithm_options),
        early_stopping_json=dumps(spec.early_stopping),
        artifacts_json=dumps(spec.artifacts),
        mutation_json=dumps(spec.mutation),
        objective_json=dumps(spec.objective),
        training_json=dumps(spec.training),
        lease_timeout_s=spec.lease_timeout_s,
        max_attempts=spec.max_attempts,
    )
    msg.max_consecutive_failures = spec.max_consecutive_failures
    return msg


def decode_spec(msg: pb.ExperimentSpec) -> ExperimentSpec:
    if not msg.name:
        raise WireError("experiment spec needs a name")
    spec = ExperimentSpec(
        name=msg.name,
        space=msg.space,
        population_size=msg.population_size,
        sample_size=msg.sample_size,
        evaluations=msg.evaluations,
        seed=msg.seed,
        algorithm=msg.algorithm or "aging",
        algorithm_options=loads_object(msg.algorithm_options_json, "algorithm_options_json", {}),
        mutation=loads_object(msg.mutation_json, "mutation_json", {}),
        objective=loads_object(msg.objective_json, "objective_json", {"kind": "accuracy"}),
        training=loads_object(msg.training_json, "training_json", {}),
        lease_timeout_s=msg.lease_timeout_s,
        max_attempts=msg.max_attempts,
        early_stopping=loads_object(msg.early_stopping_json, "early_stopping_json", {"rule": "none"}),
        artifacts=loads_object(msg.artifacts_json, "artifacts_json", {"keep": 20}),
    )
    if msg.HasField("max_consecutive_failures"):
        spec = dataclasses.replace(spec, max_consecutive_failures=msg.max_consecutive_failures)
    return spec


def encode_experiment(exp: Experiment) -> pb.Experiment:
    msg = pb.Experiment(
        id=exp.id,
        spec=encode_spec(exp.spec),
        state=exp.state,
        created_at=exp.created_at,
        proposals=exp.proposals,
        completed=exp.completed,
        failed=exp.failed,
        rejected=exp.rejected,
    )
    _set_opt(msg, "paused_reason", exp.paused_reason)
    return msg


def decode_experiment(msg: pb.Experiment) -> Experiment:
    return Experiment(
        id=msg.id,
        spec=decode_spec(msg.spec),
        state=msg.state,
        created_at=msg.created_at,
        proposals=msg.proposals,
        completed=msg.completed,
        failed=msg.failed,
        rejected=msg.rejected,
        paused_reason=_opt(msg, "paused_reason"),
    )


# --- workers, leases, metrics -------------------------------------------------------------------------


def encode_artifact(artifact: Artifact) -> pb.Artifact:
    return pb.Artifact(uri=artifact.uri, sha256=artifact.sha256, bytes=artifact.bytes)


def decode_artifact(msg: Any, name: str = "artifact") -> Artifact | None:
    """The Artifact in field ``name`` of ``msg``; None when unset."""
    if not msg.HasField(name):
        return None
    value = getattr(msg, name)
    return Artifact(uri=value.uri, sha256=value.sha256, bytes=value.bytes)


def encode_worker(worker: WorkerInfo) -> pb.WorkerInfo:
    return pb.WorkerInfo(worker_id=worker.worker_id, host=worker.host, evaluator=worker.evaluator)


def decode_worker(msg: pb.WorkerInfo) -> WorkerInfo:
    if not msg.worker_id:
        raise WireError("worker.worker_id is required")
    return WorkerInfo(worker_id=msg.worker_id, host=msg.host, evaluator=msg.evaluator)


def encode_work(lease: Lease) -> pb.Work:
    work = pb.Work(
        experiment=lease.experiment,
        individual_id=lease.individual_id,
        proposal_seq=lease.proposal_seq,
        token=lease.token,
        deadline=lease.deadline,
        attempt=lease.attempt,
        genome_json=lease.genome_json,
        space=lease.space,
        seed=lease.seed,
        training_json=dumps(lease.training),
        mutation=lease.mutation,
        artifact_uri=lease.artifact_uri,
    )
    if lease.parent_artifact is not None:
        work.parent_artifact.CopyFrom(encode_artifact(lease.parent_artifact))
    _set_opt(work, "parent_seq", lease.parent_seq)
    _set_opt(work, "latency_ms", lease.latency_ms)
    _set_opt(work, "fits_on_chip", lease.fits_on_chip)
    return work


def decode_work(msg: pb.Work) -> Lease:
    if not msg.genome_json:
        raise WireError("genome_json is required")
    return Lease(
        experiment=msg.experiment,
        individual_id=msg.individual_id,
        proposal_seq=msg.proposal_seq,
        token=msg.token,
        deadline=msg.deadline,
        attempt=msg.attempt,
        genome_json=msg.genome_json,
        space=msg.space,
        seed=msg.seed,
        training=loads_object(msg.training_json, "training_json", {}),
        parent_seq=_opt(msg, "parent_seq"),
        mutation=msg.mutation,
        latency_ms=_opt(msg, "latency_ms"),
        fits_on_chip=_opt(msg, "fits_on_chip"),
        artifact_uri=msg.artifact_uri,
        parent_artifact=decode_artifact(msg, "parent_artifact"),
    )


def encode_no_work(no_work: NoWork) -> pb.NoWork:
    return pb.NoWork(done=no_work.done, retry_after_s=no_work.retry_after_s, message=no_work.message)


def decode_no_work(msg: pb.NoWork) -> NoWork:
    return NoWork(done=msg.done, retry_after_s=msg.retry_after_s, message=msg.message)


def encode_metrics(metrics: Metrics) -> pb.Metrics:
    msg = pb.Metrics(
        accuracy=metrics.accuracy,
        train_seconds=metrics.train_seconds,
        compile_seconds=metrics.compile_seconds,
    )
    _set_opt(msg, "latency_ms", metrics.latency_ms)
    _set_opt(msg, "params", metrics.params)
    _set_opt(msg, "mult_adds", metrics.mult_adds)
    _set_opt(msg, "fits_on_chip", metrics.fits_on_chip)
    _set_opt(msg, "inherited_params", metrics.inherited_params)
    _set_opt(msg, "initial_accuracy", metrics.initial_accuracy)
    if metrics.artifact is not None:
        msg.artifact.CopyFrom(encode_artifact(metrics.artifact))
    return msg


def decode_metrics(msg: pb.Metrics) -> Metrics:
    # Range checks belong to the service; the codec only refuses what cannot be a number at all.
    values = (msg.accuracy, msg.train_seconds, msg.compile_seconds, _opt(msg, "latency_ms"),
              _opt(msg, "initial_accuracy"))
    if any(v is not None and math.isnan(v) for v in values):
        raise WireError("metrics must not be NaN")
    return Metrics(
        accuracy=msg.accuracy,
        latency_ms=_opt(msg, "latency_ms"),
        params=_opt(msg, "params"),
        mult_adds=_opt(msg, "mult_adds"),
        train_seconds=msg.train_seconds,
        compile_seconds=msg.compile_seconds,
        fits_on_chip=_opt(msg, "fits_on_chip"),
        artifact=decode_artifact(msg),
        inherited_params=_opt(msg, "inherited_params"),
        initial_accuracy=_opt(msg, "initial_accuracy"),
    )


# --- individuals --------------------------------------------------------------------------------------

_INDIVIDUAL_OPTIONAL = (
    "parent_seq", "fitness", "accuracy", "latency_ms", "params", "mult_adds", "train_seconds",
    "compile_seconds", "lease_owner", "lease_deadline", "failure_reason", "completed_at", "completion_rank", "epochs",
    "inherited_params", "initial_accuracy",
)


def encode_individual(ind: Individual) -> pb.Individual:
    msg = pb.Individual(
        id=ind.id,
        experiment=ind.experiment,
        proposal_seq=ind.proposal_seq,
        genome_json=ind.genome_json,
        fingerprint=ind.fingerprint,
        mutation=ind.mutation,
        state=ind.state,
        attempts=ind.attempts,
        created_at=ind.created_at,
        in_population=ind.in_population,
        artifact_state=ind.artifact_state,
    )
    for name in _INDIVIDUAL_OPTIONAL:
        _set_opt(msg, name, getattr(ind, name))
    if ind.artifact is not None:
        msg.artifact.CopyFrom(encode_artifact(ind.artifact))
    return msg


def decode_individual(msg: pb.Individual) -> Individual:
    optional = {name: _opt(msg, name) for name in _INDIVIDUAL_OPTIONAL}
    return Individual(
        id=msg.id,
        experiment=msg.experiment,
        proposal_seq=msg.proposal_seq,
        genome_json=msg.genome_json,
        fingerprint=msg.fingerprint,
        mutation=msg.mutation,
        state=msg.state,
        attempts=msg.attempts,
        created_at=msg.created_at,
        in_population=msg.in_population,
        artifact=decode_artifact(msg),
        artifact_state=msg.artifact_state,
        **optional,
    )


def encode_individuals(individuals: Iterable[Individual], next_page_token: str) -> pb.ListIndividualsResponse:
    return pb.ListIndividualsResponse(
        individuals=[encode_individual(i) for i in individuals], next_page_token=next_page_token
    )


def encode_progress(progress: Progress) -> pb.Progress:
    msg = pb.Progress(epoch=progress.epoch, seconds=progress.seconds)
    _set_opt(msg, "accuracy", progress.accuracy)
    _set_opt(msg, "train_loss", progress.train_loss)
    return msg


def decode_progress(msg: pb.Progress) -> Progress:
    values = (msg.seconds, _opt(msg, "accuracy"), _opt(msg, "train_loss"))
    if any(v is not None and math.isnan(v) for v in values):
        raise WireError("progress must not be NaN")
    return Progress(epoch=msg.epoch, accuracy=_opt(msg, "accuracy"), train_loss=_opt(msg, "train_loss"),
                    seconds=msg.seconds)
