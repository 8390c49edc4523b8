"""The worker loop: lease -> evaluate -> report, heartbeats from a background thread, retries with backoff.

``Worker.trials()`` yields one ``Trial`` per lease and settles it when the trial reports; ``Worker.run()``
drives an evaluator over those trials, and the Python client's ``trials()`` hands them to a user's loop.
Reports carry ``lease_next`` so a busy worker makes one round trip per evaluation. ``Unavailable``
(server restarting, network blip, overload) is retried with capped exponential backoff and full jitter,
so a restarting server sees workers come back spread out rather than all at once. A report refused with
FailedPrecondition, NotFound or AlreadyExists means the lease is no longer ours (it expired and was
re-issued, or an earlier attempt of this very report got through): the work is dropped and the loop
carries on. ``request_stop`` (SIGTERM) cancels the running evaluation, makes at most one last attempt
to release its lease, and returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal, TypeVar

from artifacts.store import ArtifactError
from domain import (
    AlreadyExists,
    FailedPrecondition,
    Lease,
    Metrics,
    NotFound,
    NoWork,
    Progress,
    Unavailable,
    WorkerInfo,
)
from domain.errors import AmoebaError
from protos.client import OrchestratorClient
from worker.evaluator import EvaluationCancelled, EvaluationFailed, EvaluationStopped, Evaluator
from worker.trial import Trial

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The lease is gone or already settled: the server will never accept this call, retrying is pointless.
LOST_LEASE = (FailedPrecondition, NotFound, AlreadyExists)
#: How long a worker keeps retrying a server that does not answer before it says so and exits.
DEFAULT_GIVE_UP_S = 60.0
#: The longest wait between heartbeat tries while the server is unreachable.
HEARTBEAT_RETRY_CAP_S = 10.0

ExitReason = Literal["done", "stopped", "max-evaluations"]


def make_worker_id() -> str:
    """host-pid-random: stable for the process, unique across restarts and hosts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class ServerUnreachable(AmoebaError):
    """The server stayed unreachable for longer than the worker's patience."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    base_s: float = 0.2
    cap_s: float = 10.0
    give_up_after_s: float = DEFAULT_GIVE_UP_S

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
    # Lease the next child while the current one trains and let the evaluator prepare it (compile its steps
    # on the host's idle cores while the accelerator trains): on a GPU, not on a CPU that is busy training.
    prefetch: bool = False


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    worker_id: str
    evaluated: int  # reports the server accepted
    failed: int  # evaluations reported as failures
    dropped: int  # work whose lease was lost before the report landed
    released: int
    exit_reason: ExitReason
    stopped: int = 0  # children the early-stopping rule stopped

    def to_json(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id, "evaluated": self.evaluated, "failed": self.failed,
            "dropped": self.dropped, "released": self.released, "stopped": self.stopped,
            "exit_reason": self.exit_reason,
        }


class _Stopped(Exception):
    """Internal: a stop request ended a retry, or a wait between tries."""


class _Heartbeat:
    """Extends one lease every (deadline - now) / 3 until closed; notices when the lease is lost."""

    def __init__(self, client: OrchestratorClient, lease: Lease, worker_id: str, cancel: threading.Event) -> None:
        self._client, self._lease, self._worker_id, self._cancel = client, lease, worker_id, cancel
        self.deadline = lease.deadline
        self.lost = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lease.individual_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while True:
            period = max(0.05, (self.deadline - time.time()) / 3.0)
            if failures:
                # The server is unreachable: try again with capped backoff (its lease may have run out meanwhile;
                # when it answers again the heartbeat says so), not faster and faster.
                period = min(HEARTBEAT_RETRY_CAP_S, 0.5 * 2.0 ** min(failures, 10))
            if self._closed.wait(period):
                return
            try:
                self.deadline = self._client.heartbeat(self._lease.individual_id, self._lease.token, self._worker_id)
            except LOST_LEASE as exc:
                log.warning("lease of individual %d lost: %s", self._lease.individual_id, exc)
                self.lost.set()
                self._cancel.set()  # no point finishing an evaluation nobody will accept
                return
            except AmoebaError as exc:
                # One line when the server goes away, one when it is back: an outage during a long training
                # run must not write a line per beat.
                (log.info if failures == 0 else log.debug)("heartbeat failed (%s); retrying", exc)
                failures += 1
                continue
            if failures:
                log.info("heartbeat of individual %d answered again after %d failed tries", self._lease.individual_id,
                         failures)
                failures = 0

    def retarget(self, cancel: threading.Event) -> None:
        """Set ``cancel`` (instead of the event given at start) when the lease is lost from now on."""
        self._cancel = cancel
        if self.lost.is_set():
            cancel.set()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


class _Session:
    """The TrialSession of one lease: settles it through the worker (report, fail) exactly once."""

    def __init__(self, worker: Worker, lease: Lease, beat: _Heartbeat, lease_next: bool) -> None:
        self.worker, self.lease, self.beat, self.lease_next = worker, lease, beat, lease_next
        self.settled = False
        self.next: Lease | NoWork | None = None

    def stopping(self) -> bool:
        return self.worker.stop.is_set() or self.beat.lost.is_set()

    def progress(self, progress: Progress) -> bool:
        if self.beat.lost.is_set():
            return True  # nobody will accept it; the cancel event ends the evaluation
        lease = self.lease
        try:
            answer = self.worker.client.progress(lease.individual_id, lease.token, self.worker.worker_id, progress)
        except LOST_LEASE as exc:
            log.warning("progress of individual %d refused (%s)", lease.individual_id, exc)
            return True
        except AmoebaError as exc:
            # Progress is advice: an unreachable server must not cost the training it would have advised on.
            log.info("progress of individual %d not sent (%s)", lease.individual_id, exc)
            return True
        if answer.stop:
            log.info("individual %d stopped early: %s", lease.individual_id, answer.reason)
            self.settled = True
            self.beat.close()
            self.worker.counts["stopped"] += 1
        return not answer.stop

    def report(self, metrics: Metrics) -> None:
        self.settled = True
        self.beat.close()
        if self.beat.lost.is_set():
            self.worker.counts["dropped"] += 1
            return
        lease_next = self.lease_next and not self.worker.stop.is_set()
        lease, worker_id = self.lease, self.worker.worker_id
        self.next = self.worker.settle(lease, "report", lambda: self.worker.client.report(
            lease.individual_id, lease.token, worker_id, metrics, lease_next))

    def fail(self, reason: str) -> None:
        self.settled = True
        self.beat.close()
        if self.beat.lost.is_set():
            self.worker.counts["dropped"] += 1
            return
        lease, worker_id = self.lease, self.worker.worker_id
        self.worker.settle(lease, "failure", lambda: self.worker.client.fail(
            lease.individual_id, lease.token, worker_id, reason, False))


class Worker:
    """Runs evaluations until the experiment ends, ``max_evaluations`` is reached, or ``request_stop``."""

    def __init__(self, client: OrchestratorClient, evaluator: Evaluator | None, config: WorkerConfig,
                 seed: int | None = None, evaluator_name: str = "client") -> None:
        self.client = client
        self.evaluator = evaluator
        self.config = config
        name = evaluator.name if evaluator is not None else evaluator_name
        self.identity = WorkerInfo(config.worker_id or make_worker_id(), socket.gethostname(), name[:64])
        self.stop = threading.Event()
        self._cancel = threading.Event()
        self._rng = random.Random(seed)
        self.counts = {"evaluated": 0, "failed": 0, "dropped": 0, "released": 0, "stopped": 0}
        self.exit_reason: ExitReason = "done"
        #: Called with each prefetched trial (``run`` starts the evaluator's ``prepare`` on it).
        self.on_prefetch: Callable[[Trial], None] | None = None
        self._preparing: dict[int, threading.Thread] = {}

    @property
    def worker_id(self) -> str:
        return self.identity.worker_id

    def request_stop(self) -> None:
        """Finish nothing new: cancel the running evaluation (its lease is released) and return from ``run``."""
        self.stop.set()
        self._cancel.set()

    # --- retrying ---------------------------------------------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call`` until it succeeds, retrying Unavailable with backoff; after a stop request, no more
        waiting: the try under way (or one last one) and then _Stopped."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return call()
            except Unavailable as exc:
                if self.stop.is_set():
                    raise _Stopped(f"{what} not sent: stopping with the server unreachable ({exc})") from None
                waited = time.monotonic() - started
                if waited > self.config.backoff.give_up_after_s:
                    raise ServerUnreachable(
                        f"server {self.client.address} unreachable for {waited:.0f}s ({exc}); giving up "
                        f"(--give-up-after {self.config.backoff.give_up_after_s:g})") from None
                delay = self.config.backoff.delay(attempt, self._rng)
                log.info("%s: %s; retrying in %.2fs", what, exc, delay)
                attempt += 1
                self.stop.wait(delay)

    # --- the loop ---------------------------------------------------------------------------------------

    def _lease(self) -> Lease | None:
        """The next work, waiting while every individual is leased; None when done or stopping."""
        while not self.stop.is_set():
            try:
                got = self._retrying("lease", lambda: self.client.lease(self.identity, self.config.experiment))
            except _Stopped:
                return None
            if isinstance(got, Lease):
                return got
            if got.done and not (self.config.wait_for_work and self.config.experiment is None):
                log.info("nothing left to do: %s", got.message or "done")
                return None
            pause = self.config.max_idle_wait_s if got.done else got.retry_after_s
            self.stop.wait(min(max(pause, 0.01), self.config.max_idle_wait_s))
        return None

    def _reached_max(self, ahead: int) -> bool:
        limit = self.config.max_evaluations
        done = self.counts["evaluated"] + self.counts["failed"] + self.counts["dropped"]
        return limit is not None and done + ahead >= limit

    def trials(self) -> Generator[Trial, None, None]:
        """One Trial per lease until the work is done, ``max_evaluations`` is reached or a stop request.

        A trial the consumer leaves unsettled (an evaluation cancelled, an exception in its loop, a
        ``break``) is released, so the orchestrator hands it to another worker at once; so is a next
        lease that arrived with the last report when the loop ends there. With ``prefetch``, the next
        lease is taken while the current trial runs (heartbeated from then on) and handed to
        ``on_prefetch`` (``run`` compiles it in the background); it is released when the loop ends first.
        """
        log.info("worker %s on %s (evaluator %s)", self.worker_id, self.client.address, self.identity.evaluator)
        self.exit_reason = "done"
        lease = self._lease()
        promoted: _Heartbeat | None = None
        ahead: tuple[Lease, _Heartbeat] | None = None
        try:
            while lease is not None:
                self._cancel.clear()
                if self.stop.is_set():
                    self._cancel.set()
                if promoted is not None:
                    beat, promoted = promoted, None
                    beat.retarget(self._cancel)  # from now on a lost lease cancels this evaluation
                else:
                    beat = _Heartbeat(self.client, lease, self.worker_id, self._cancel)
                if self.config.prefetch and ahead is None and self._room(2) and not self.stop.is_set():
                    ahead = self._lease_ahead()
                session = _Session(self, lease, beat, lease_next=ahead is None and not self._reached_max(1))
                resumed = False
                try:
                    yield Trial(lease, session)
                    resumed = True
                finally:
                    if not session.settled:
                        beat.close()
                        if beat.lost.is_set():
                            self.counts["dropped"] += 1
                        else:
                            self.release(lease)
                    if not resumed and isinstance(session.next, Lease):
                        self.release(session.next)  # the consumer left with a lease from the last report
                nxt = session.next
                if self.stop.is_set() or self._reached_max(0):
                    self.exit_reason = "stopped" if self.stop.is_set() else "max-evaluations"
                    if isinstance(nxt, Lease):
                        self.release(nxt)  # leased in the same round trip as the report: hand it straight back
                    break
                if ahead is not None:
                    (lease, promoted), ahead = ahead, None
                    if promoted.lost.is_set():  # it expired while waiting: the orchestrator requeued it
                        promoted.close()
                        promoted = None
                        self.counts["dropped"] += 1
                        lease = self._lease()
                elif isinstance(nxt, Lease):
                    lease = nxt
                elif isinstance(nxt, NoWork) and not nxt.done:
                    self.stop.wait(min(max(nxt.retry_after_s, 0.01), self.config.max_idle_wait_s))
                    lease = self._lease()
                elif isinstance(nxt, NoWork) and nxt.done and self.config.experiment is not None:
                    break
                else:
                    # Unsettled or unanswered (report dropped or failed), or this experiment ended while
                    # others may run on: ask again.
                    lease = self._lease()
        finally:
            for held, held_beat in [a for a in (ahead,) if a is not None] + (
                    [(lease, promoted)] if promoted is not None and lease is not None else []):
                held_beat.close()
                if not held_beat.lost.is_set():
                    self.release(held)
        if self.stop.is_set():
            self.exit_reason = "stopped"

    def _start_preparing(self, prepare: Callable[[Trial], object], trial: Trial) -> None:
        def work() -> None:
            started = time.perf_counter()
            prepare(trial)
            log.info("prepared individual %d ahead in %.1fs", trial.individual_id, time.perf_counter() - started)

        thread = threading.Thread(target=work, name=f"prepare-{trial.individual_id}", daemon=True)
        self._preparing[trial.individual_id] = thread
        thread.start()

    def _room(self, outstanding: int) -> bool:
        """True when ``outstanding`` more evaluations fit under ``max_evaluations``."""
        limit = self.config.max_evaluations
        done = self.counts["evaluated"] + self.counts["failed"] + self.counts["dropped"]
        return limit is None or done + outstanding <= limit

    def _lease_ahead(self) -> tuple[Lease, _Heartbeat] | None:
        """One try for the next lease while the current trial runs (no waiting: none now, none ahead)."""
        try:
            got = self.client.lease(self.identity, self.config.experiment)
        except AmoebaError as exc:
            log.debug("no lease ahead: %s", exc)
            return None
        if not isinstance(got, Lease):
            return None
        # Its own cancel event until it becomes the current trial: losing it must not cancel this one.
        beat = _Heartbeat(self.client, got, self.worker_id, threading.Event())
        if self.on_prefetch is not None:
            self.on_prefetch(Trial(got))
        return got, beat

    def run(self) -> WorkerSummary:
        """Evaluate every trial with the evaluator until done; the summary of what happened."""
        if self.evaluator is None:
            raise ValueError("Worker.run needs an evaluator (Worker.trials serves a loop of one's own)")
        prepare = getattr(self.evaluator, "prepare", None)
        if self.config.prefetch and prepare is not None:
            self.on_prefetch = lambda ahead: self._start_preparing(prepare, ahead)
        with contextlib.closing(self.trials()) as trials:
            for trial in trials:
                preparing = self._preparing.pop(trial.individual_id, None)
                if preparing is not None:
                    preparing.join()  # its steps are being compiled: evaluate once they are in the cache
                try:
                    metrics = self.evaluator.evaluate(trial, self._cancel)
                except EvaluationFailed as exc:
                    trial.fail(exc.reason)
                    continue
                except ArtifactError as exc:  # the store could not be written: never a result without its weights
                    trial.fail(str(exc))
                    continue
                except EvaluationCancelled:
                    continue  # unsettled: released (or dropped, when the lease was lost)
                except EvaluationStopped:
                    continue  # settled by the orchestrator when it stopped the trial
                if not trial.settled:
                    trial.report(metrics)
        return WorkerSummary(self.worker_id, **self.counts, exit_reason=self.exit_reason)

    def settle(self, lease: Lease, what: str, call: Callable[[], T]) -> T | None:
        """A report or failure, retried while the server is unreachable; dropped when the lease is lost."""
        try:
            result = self._retrying(what, call)
        except LOST_LEASE as exc:
            log.warning("%s for individual %d refused (%s): dropping it", what, lease.individual_id, exc)
            self.counts["dropped"] += 1
            return None
        except _Stopped as exc:
            log.warning("%s", exc)
            self.counts["dropped"] += 1
            return None
        self.counts["evaluated" if what == "report" else "failed"] += 1
        return result

    def release(self, lease: Lease) -> None:
        try:
            self._retrying("release", lambda: self.client.release(lease.individual_id, lease.token, self.worker_id))
            self.counts["released"] += 1
        except (AmoebaError, _Stopped) as exc:
            # The lease will expire on its own; releasing only makes the requeue immediate.
            log.warning("could not release individual %d: %s", lease.individual_id, exc)
