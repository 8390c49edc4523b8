"""The worker loop: lease -> evaluate -> report, heartbeats from a background thread, retries with backoff.

Reports carry ``lease_next`` so a busy worker makes one round trip per evaluation. Transient errors
(UNAVAILABLE, DEADLINE_EXCEEDED) are retried with capped exponential backoff and full jitter, so a
restarting server sees workers come back spread out rather than all at once. A report refused with
FAILED_PRECONDITION, NOT_FOUND or ALREADY_EXISTS means the lease is no longer ours (it expired and
was re-issued, or an earlier attempt of this very report got through): the work is dropped and the
loop carries on. ``request_stop`` (SIGTERM) cancels the running evaluation and releases its lease.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import grpc

from genome import GenomeError, parse_genome
from latency.settings import LatencySettings, latency_of, resolve_settings
from worker.client import TRANSIENT, NoWorkNow, OrchestratorClient, WorkerIdentity, WorkLease
from worker.evaluator import EvaluationCancelled, EvaluationFailed, Evaluator, Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# The lease is gone or already settled: the server will never accept this report, retrying is pointless.
LOST_LEASE = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS})

ExitReason = Literal["done", "stopped", "max-evaluations"]


def make_worker_id() -> str:
    """host-pid-random: stable for the process, unique across restarts and hosts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class ServerUnreachable(RuntimeError):
    """The server stayed unreachable for longer than the worker's patience."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    base_s: float = 0.2
    cap_s: float = 10.0
    give_up_after_s: float = 600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2.0 ** min(attempt, 30))))


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    experiment: str | None = None  # None: any running experiment, moving on as each one ends
    max_evaluations: int | None = None
    worker_id: str = ""
    backoff: Backoff = Backoff()
    max_idle_wait_s: float = 5.0  # cap on the server's retry_after hint
    # Without an experiment: keep polling when none is running instead of exiting (long-lived pools).
    wait_for_work: bool = False


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    worker_id: str
    evaluated: int  # reports the server accepted
    failed: int  # evaluations reported as failures
    dropped: int  # work whose lease was lost before the report landed
    released: int
    exit_reason: ExitReason

    def to_json(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "dropped": self.dropped,
            "released": self.released,
            "exit_reason": self.exit_reason,
        }


class _Heartbeat:
    """Extends one lease every (deadline - now) / 3 until closed; notices when the lease is lost."""

    def __init__(self, client: OrchestratorClient, lease: WorkLease, worker_id: str, cancel: threading.Event) -> None:
        self._client, self._lease, self._worker_id, self._cancel = client, lease, worker_id, cancel
        self.deadline = lease.deadline
        self.lost = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lease.individual_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            period = max(0.05, (self.deadline - time.time()) / 3.0)
            if self._closed.wait(period):
                return
            try:
                self.deadline = self._client.heartbeat(self._lease, self._worker_id)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in LOST_LEASE:
                    log.warning("lease of individual %d lost: %s", self._lease.individual_id, exc.details())
                    self.lost.set()
                    self._cancel.set()  # no point finishing an evaluation nobody will accept
                    return
                # Transient: try again sooner; the deadline has slack for two missed beats.
                log.info("heartbeat failed (%s); retrying", code)
                self.deadline = max(time.time() + 0.3, self.deadline - (self.deadline - time.time()) / 2)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


class Worker:
    """Runs evaluations until the experiment ends, ``max_evaluations`` is reached, or ``request_stop``."""

    def __init__(self, client: OrchestratorClient, evaluator: Evaluator, config: WorkerConfig, seed: int | None = None) -> None:
        self.client = client
        self.evaluator = evaluator
        self.config = config
        self.identity = WorkerIdentity(config.worker_id or make_worker_id(), socket.gethostname(), evaluator.name)
        self.stop = threading.Event()
        self._cancel = threading.Event()
        self._rng = random.Random(seed)
        self._counts = {"evaluated": 0, "failed": 0, "dropped": 0, "released": 0}
        self._latency_settings: dict[str, LatencySettings | None] = {}

    @property
    def worker_id(self) -> str:
        return self.identity.worker_id

    def request_stop(self) -> None:
        """Finish nothing new: cancel the running evaluation (its lease is released) and return from ``run``."""
        self.stop.set()
        self._cancel.set()

    # --- retrying ---------------------------------------------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return call()
            except grpc.RpcError as exc:
                if exc.code() not in TRANSIENT:
                    raise
                waited = time.monotonic() - started
                if waited > self.config.backoff.give_up_after_s:
                    raise ServerUnreachable(
                        f"server {self.client.address} unreachable for {waited:.0f}s ({exc.code().name}: {exc.details()})"
                    ) from None
                delay = self.config.backoff.delay(attempt, self._rng)
                log.info("%s: %s; retrying in %.2fs", what, exc.code().name, delay)
                attempt += 1
                # A stop request during a lease or a report's retry still lets the current call finish
                # (we only stop waiting between tries when there is nothing to hand back).
                if self.stop.wait(delay) and what in ("lease", "release"):
                    raise _Stopped() from None

    # --- the loop ---------------------------------------------------------------------------------------

    def _lease(self) -> WorkLease | None:
        """The next work, waiting while every individual is leased; None when done or stopping."""
        while not self.stop.is_set():
            try:
                got = self._retrying("lease", lambda: self.client.lease(self.identity, self.config.experiment))
            except _Stopped:
                return None
            if isinstance(got, WorkLease):
                return got
            if got.done and not (self.config.wait_for_work and self.config.experiment is None):
                log.info("nothing left to do: %s", got.message or "done")
                return None
            pause = self.config.max_idle_wait_s if got.done else got.retry_after_s
            self.stop.wait(min(max(pause, 0.01), self.config.max_idle_wait_s))
        return None

    def run(self) -> WorkerSummary:
        log.info("worker %s on %s (evaluator %s)", self.worker_id, self.client.address, self.evaluator.name)
        lease = self._lease()
        reason: ExitReason = "done"
        while lease is not None:
            lease_next = not self._reached_max(1)
            nxt = self._evaluate_and_report(lease, lease_next)
            if self.stop.is_set():
                reason = "stopped"
                if isinstance(nxt, WorkLease):
                    self._release(nxt)  # leased in the same round trip as the report: hand it straight back
                break
            if self._reached_max(0):
                reason = "max-evaluations"
                if isinstance(nxt, WorkLease):
                    self._release(nxt)
                break
            if isinstance(nxt, WorkLease):
                lease = nxt
            elif isinstance(nxt, NoWorkNow) and not nxt.done:
                self.stop.wait(min(max(nxt.retry_after_s, 0.01), self.config.max_idle_wait_s))
                lease = self._lease()
            elif isinstance(nxt, NoWorkNow) and nxt.done and self.config.experiment is not None:
                break
            else:
                # No answer (report dropped or failed), or this experiment ended while others may run on.
                lease = self._lease()
        if self.stop.is_set():
            reason = "stopped"
        return WorkerSummary(self.worker_id, **self._counts, exit_reason=reason)

    def _reached_max(self, ahead: int) -> bool:
        limit = self.config.max_evaluations
        done = self._counts["evaluated"] + self._counts["failed"] + self._counts["dropped"]
        return limit is not None and done + ahead >= limit

    def _evaluate_and_report(self, lease: WorkLease, lease_next: bool) -> WorkLease | NoWorkNow | None:
        self._cancel.clear()
        if self.stop.is_set():
            self._cancel.set()
        beat = _Heartbeat(self.client, lease, self.worker_id, self._cancel)
        self._settings_for(lease)
        try:
            metrics: Metrics | None = None
            failure: EvaluationFailed | None = None
            try:
                metrics = self.evaluator.evaluate(lease.item(), self._cancel)
            except EvaluationFailed as exc:
                failure = exc
            except EvaluationCancelled:
                pass
            except BaseException:
                # Not the individual's fault (missing dataset, a bug, Ctrl-C): give the lease back, then end.
                beat.close()
                if not beat.lost.is_set():
                    self._release(lease)
                raise
        finally:
            beat.close()
        if beat.lost.is_set():
            self._counts["dropped"] += 1
            return None
        if failure is not None:
            return self._settle(lease, "failure", lambda: self.client.fail(lease, self.worker_id, failure.reason, False))
        if metrics is None:  # cancelled
            self._release(lease)
            return None
        lease_next = lease_next and not self.stop.is_set()
        metrics = self._with_latency(lease, metrics)
        return self._settle(lease, "report", lambda: self.client.report(lease, self.worker_id, metrics, lease_next))

    def _with_latency(self, lease: WorkLease, metrics: Metrics) -> Metrics:
        """Every report carries the simulated Edge TPU latency (for the network the experiment's objective names)."""
        if metrics.latency_ms is not None:
            return metrics
        settings = self._latency_settings.get(lease.experiment)
        if settings is None:
            return metrics
        try:
            latency_ms, fits = latency_of(parse_genome(lease.genome, lease.space), settings)
        except (GenomeError, ValueError) as exc:
            log.warning("no latency estimate for individual %d: %s", lease.individual_id, exc)
            return metrics
        return dataclasses.replace(metrics, latency_ms=latency_ms, fits_on_chip=fits)

    def _settings_for(self, lease: WorkLease) -> LatencySettings | None:
        """The experiment objective's latency settings (space defaults when it names none), fetched once.

        One try, right after a lease came back (the server is reachable then). A transient failure is not
        cached and never delays a report: the report goes without latency and the orchestrator fills it in.
        """
        if lease.experiment not in self._latency_settings:
            try:
                exp = self.client.get_experiment(lease.experiment)
            except grpc.RpcError as exc:
                log.info("latency settings of %s not fetched now (%s)", lease.experiment, exc.code())
                return None
            settings: LatencySettings | None = None
            try:
                objective = json.loads(exp.spec.objective_json or "{}")
                settings = resolve_settings(lease.space, objective.get("latency") if isinstance(objective, dict) else None)
            except ValueError as exc:
                log.warning("latency settings of %s unusable (%s); reporting without latency", lease.experiment, exc)
            self._latency_settings[lease.experiment] = settings
        return self._latency_settings[lease.experiment]

    def _settle(self, lease: WorkLease, what: str, call: Callable[[], T]) -> T | None:
        try:
            result = self._retrying(what, call)
        except grpc.RpcError as exc:
            if exc.code() in LOST_LEASE:
                log.warning("%s for individual %d refused (%s): dropping it", what, lease.individual_id, exc.details())
                self._counts["dropped"] += 1
                return None
            raise
        self._counts["evaluated" if what == "report" else "failed"] += 1
        return result

    def _release(self, lease: WorkLease) -> None:
        try:
            self._retrying("release", lambda: self.client.release(lease, self.worker_id))
            self._counts["released"] += 1
        except (grpc.RpcError, ServerUnreachable, _Stopped) as exc:
            # The lease will expire on its own; releasing only makes the requeue immediate.
            log.warning("could not release individual %d: %s", lease.individual_id, exc)


class _Stopped(Exception):
    """Internal: a stop request interrupted a retry wait where nothing needs handing back."""
