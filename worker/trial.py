"""``Trial``: one leased individual as an evaluator (or a user's loop) sees it, and how it reports back.

The same value reaches a built-in evaluator, a user's ``MODULE:FUNCTION`` evaluator and a Python
client's ``for trial in client.trials(...)`` loop. Its lease is kept alive by heartbeats from a
background thread; ``report`` / ``fail`` settle it (once).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Protocol

from domain import Artifact, Lease, Metrics, Progress
from domain.errors import AmoebaError
from genome.base import Genome


class TrialError(AmoebaError):
    """A trial was settled twice, or reported with metrics that are not numbers."""


class TrialSession(Protocol):
    """What a trial reports through (the worker loop implements it). Each method settles the lease."""

    def report(self, metrics: Metrics) -> None:
        """Send the completed evaluation's metrics (with the next lease in the same round trip)."""
        ...

    def fail(self, reason: str) -> None:
        """Record the evaluation as failed for ``reason`` (it never enters the population)."""
        ...

    def stopping(self) -> bool:
        """True once the worker was asked to stop: a long evaluation should return soon."""
        ...

    def progress(self, progress: Progress) -> bool:
        """Send an intermediate result; False when the early-stopping rule stopped the trial (it is then
        settled: report nothing more)."""
        ...


_METRIC_KEYS = ("accuracy", "latency_ms", "params", "flops", "mult_adds", "train_seconds", "compile_seconds",
                "fits_on_chip", "inherited_params", "initial_accuracy")


def metrics_from_mapping(values: Mapping[str, Any]) -> Metrics:
    """Metrics from a user's mapping: ``accuracy`` in [0, 1] and optionally ``latency_ms``, ``params``,
    ``flops`` (multiply-adds), ``train_seconds``; other numeric keys go to ``extra``."""
    if not isinstance(values, Mapping):
        raise TrialError(f"an evaluator must return a mapping with 'accuracy', got {type(values).__name__}")
    if "accuracy" not in values:
        raise TrialError(f"the metrics must include 'accuracy' (got {', '.join(map(str, values)) or 'nothing'})")

    def number(key: str) -> float | None:
        value = values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
            raise TrialError(f"metric {key} must be a finite number, got {str(value)[:60]!r}")
        return float(value)

    def integer(key: str) -> int | None:
        value = number(key)
        return None if value is None else int(value)

    accuracy = number("accuracy")
    assert accuracy is not None
    if not 0.0 <= accuracy <= 1.0:
        raise TrialError(f"accuracy must be in [0, 1], got {accuracy!r}")
    fits = values.get("fits_on_chip")
    extra = {str(k): float(v) for k, v in values.items()
             if k not in _METRIC_KEYS and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    return Metrics(
        accuracy=accuracy, latency_ms=number("latency_ms"), params=integer("params"),
        mult_adds=integer("mult_adds") if "mult_adds" in values else integer("flops"),
        train_seconds=number("train_seconds") or 0.0, compile_seconds=number("compile_seconds") or 0.0,
        fits_on_chip=fits if isinstance(fits, bool) else None, extra=extra,
        inherited_params=integer("inherited_params"), initial_accuracy=number("initial_accuracy"),
    )


class Trial:
    """One individual to evaluate: ``genome`` (the genome object), ``genome_json``, ``space``, ``seed``
    (derived from the experiment seed and the proposal number), ``training`` (the experiment's settings),
    ``proposal_seq``, ``parent_seq``, ``attempt`` and ``latency_ms`` (the simulated Edge TPU latency the
    orchestrator priced for the objective's network).

    In a Python client's loop, call ``report(accuracy=..., ...)`` or ``fail(reason)`` once; a user
    evaluator function returns the metrics mapping instead and the worker reports it.
    """

    __slots__ = ("_artifact", "_genome", "_session", "_settled", "lease")

    def __init__(self, lease: Lease, session: TrialSession | None = None) -> None:
        self.lease = lease
        self._session = session
        self._genome: Genome | None = None
        self._settled = False
        self._artifact: Artifact | None = None

    # --- what the trial is ---

    @property
    def experiment(self) -> str:
        return self.lease.experiment

    @property
    def individual_id(self) -> int:
        return self.lease.individual_id

    @property
    def proposal_seq(self) -> int:
        return self.lease.proposal_seq

    @property
    def parent_seq(self) -> int | None:
        return self.lease.parent_seq

    @property
    def attempt(self) -> int:
        return self.lease.attempt

    @property
    def space(self) -> str:
        return self.lease.space

    @property
    def genome_json(self) -> str:
        return self.lease.genome_json

    @property
    def genome(self) -> Genome:
        """The genome object, parsed (and validated) once from ``genome_json`` by its space."""
        if self._genome is None:
            import spaces

            self._genome = spaces.parse_genome(self.lease.genome_json, self.lease.space)
        return self._genome

    @property
    def seed(self) -> int:
        return self.lease.seed

    @property
    def training(self) -> dict[str, Any]:
        return self.lease.training

    @property
    def latency_ms(self) -> float | None:
        return self.lease.latency_ms

    @property
    def settled(self) -> bool:
        return self._settled

    # --- artifacts: this child's weights, its parent's ---

    @property
    def artifact_uri(self) -> str:
        """Where ``save_artifact`` writes (the server's store; "" when it keeps no artifacts)."""
        return self.lease.artifact_uri

    @property
    def artifact(self) -> Artifact | None:
        """The artifact saved for this trial so far (reported with its metrics)."""
        return self._artifact

    @property
    def parent_artifact(self) -> Artifact | None:
        """The parent's kept weights, when it has some in the store (for weight inheritance)."""
        return self.lease.parent_artifact

    def save_artifact(self, weights: bytes, manifest: Mapping[str, Any] | None = None) -> Artifact:
        """Write this child's trained weights (any bytes: a Flax msgpack, a torch state dict, ...) and a
        manifest to the artifact store; the report then carries its URI, sha256 and size.

        ``ArtifactError`` when the server keeps no artifacts or the store cannot be written: an evaluator
        that was to keep weights then fails the evaluation rather than report a result without them.
        """
        from artifacts.store import ArtifactError, write_artifact

        if not self.lease.artifact_uri:
            raise ArtifactError("the server keeps no artifacts: start it with --artifacts URL to save weights")
        if not isinstance(weights, bytes | bytearray | memoryview):
            raise ArtifactError(f"save_artifact takes the weights as bytes, got {type(weights).__name__}")
        doc = {**self.describe(), **dict(manifest or {})}
        self._artifact = write_artifact(self.lease.artifact_uri, bytes(weights), doc)
        return self._artifact

    def load_parent(self) -> bytes | None:
        """The parent's weights (checked against their sha256), or None when it has none kept.

        ``ArtifactError`` (one line) when they are missing or damaged: wrong weights are never loaded."""
        if self.lease.parent_artifact is None:
            return None
        from artifacts.store import read_artifact

        return read_artifact(self.lease.parent_artifact)

    def describe(self) -> dict[str, Any]:
        """What the manifest says of any artifact of this trial: who it is and what trained it."""
        from artifacts.store import library_versions

        return {"experiment": self.experiment, "proposal_seq": self.proposal_seq, "parent_seq": self.parent_seq,
                "mutation": self.lease.mutation, "attempt": self.attempt, "space": self.space, "seed": self.seed,
                "fingerprint": self._fingerprint(), "genome": self.genome_json, "training": self.training,
                "parent_artifact": None if self.parent_artifact is None else self.parent_artifact.uri,
                "versions": library_versions()}

    def _fingerprint(self) -> str | None:
        try:
            return self.genome.fingerprint
        except AmoebaError:
            return None

    @property
    def stopping(self) -> bool:
        """True once the worker or client is shutting down: finish or fail soon."""
        return self._session is not None and self._session.stopping()

    # --- settling it ---

    def _settle(self) -> TrialSession:
        if self._session is None:
            raise TrialError("this trial is evaluated by a worker: return the metrics instead of reporting them")
        if self._settled:
            raise TrialError(f"trial {self.proposal_seq} was reported already")
        self._settled = True
        return self._session

    def report(self, metrics: Mapping[str, Any] | Metrics | None = None, /, **values: Any) -> None:
        """Report the evaluation: ``trial.report(accuracy=0.93, latency_ms=1.2)`` or a mapping/Metrics."""
        built = metrics if isinstance(metrics, Metrics) else metrics_from_mapping({**(metrics or {}), **values})
        if built.artifact is None and self._artifact is not None:
            built = dataclasses.replace(built, artifact=self._artifact)
        self._settle().report(built)

    def fail(self, reason: str) -> None:
        """Report the evaluation as failed (NaN loss, out of memory, ...); it never enters the population."""
        self._settle().fail(str(reason).strip() or "failed without a reason")

    def progress(self, epoch: int, accuracy: float | None = None, train_loss: float | None = None,
                 seconds: float = 0.0) -> bool:
        """Report an intermediate result after ``epoch`` epochs (or steps); True: go on training.

        False means the experiment's early-stopping rule stopped the trial: the orchestrator recorded it
        with this partial accuracy, and the trial is settled (do not report it). An unbound trial (a worker's
        evaluator without a session, a unit test) always goes on; a progress report that cannot reach the
        server does not stop training either.
        """
        if self._session is None or self._settled:
            return not self._settled
        def number(value: float | None) -> float | None:  # a NaN loss is the final report's business
            return float(value) if value is not None and math.isfinite(value) else None

        go_on = self._session.progress(Progress(int(epoch), number(accuracy), number(train_loss),
                                                number(seconds) or 0.0))
        if not go_on:
            self._settled = True
        return go_on

    def __repr__(self) -> str:
        return f"Trial({self.experiment}#{self.proposal_seq}, {self.space}, attempt {self.attempt})"
