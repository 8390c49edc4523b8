"""An in-memory OrchestratorService for servicer, server and worker tests (no database; leases are real)."""

from __future__ import annotations

import random
import secrets
import threading
import time
from dataclasses import replace
from typing import Any

import spaces
from domain import (
    AlreadyExists,
    Experiment,
    ExperimentSpec,
    FailedPrecondition,
    Individual,
    InvalidArgument,
    Lease,
    Metrics,
    NotFound,
    NoWork,
    Page,
    WorkerInfo,
)


class FakeService:
    """Hands out random NB201 genomes; checks tokens, deadlines and duplicates like the real service must."""

    def __init__(self, lease_timeout_s: float = 30.0) -> None:
        self.lock = threading.Lock()
        self.experiments: dict[str, Experiment] = {}
        self.individuals: dict[int, Individual] = {}
        self.tokens: dict[int, str] = {}
        self.queue: list[int] = []
        self.calls: list[str] = []
        self.lease_timeout_s = lease_timeout_s
        self.block: threading.Event | None = None  # when set by a test, lease waits on it
        self.entered = threading.Event()  # set when a lease call has reached the service

    def create_experiment(self, spec: ExperimentSpec) -> Experiment:
        if spec.population_size < 1:
            raise InvalidArgument("population_size must be >= 1")
        with self.lock:
            if spec.name in self.experiments:
                raise AlreadyExists(f"experiment {spec.name!r} already exists")
            exp = Experiment(len(self.experiments) + 1, spec, "running", time.time(), 0, 0, 0)
            self.experiments[spec.name] = exp
            return exp

    def get_experiment(self, name: str) -> Experiment:
        try:
            return self.experiments[name]
        except KeyError:
            raise NotFound(f"no experiment named {name!r}") from None

    def list_experiments(self) -> list[Experiment]:
        return list(self.experiments.values())

    def lease(self, worker: WorkerInfo, experiment: str | None) -> Lease | NoWork:
        self.entered.set()
        if self.block is not None:
            self.block.wait(10)
        with self.lock:
            self.calls.append(f"lease:{worker.worker_id}")
            names = [experiment] if experiment else [n for n, e in self.experiments.items() if e.state == "running"]
            for name in names:
                exp = self.get_experiment(name)
                if exp.state == "done":
                    continue
                queued = [i for i in self.queue if self.individuals[i].experiment == name]
                if queued:
                    self.queue.remove(queued[0])
                    ind = replace(
                        self.individuals[queued[0]], state="leased", lease_owner=worker.worker_id,
                        lease_deadline=time.time() + self.lease_timeout_s,
                    )
                    self.individuals[ind.id] = ind
                    self.tokens[ind.id] = secrets.token_hex(8)
                    return self._lease_of(ind)
                if exp.proposals >= exp.spec.evaluations:
                    return NoWork(done=False, retry_after_s=0.05, message="all leased")
                seq = exp.proposals
                genome = spaces.get(exp.spec.space).sample(random.Random(seq))
                ind = Individual(
                    id=len(self.individuals) + 1, experiment=name, proposal_seq=seq, genome=genome.to_json(),
                    fingerprint=genome.fingerprint, parent_seq=None, mutation="", state="leased", attempts=1,
                    lease_owner=worker.worker_id, lease_deadline=time.time() + self.lease_timeout_s,
                )
                self.individuals[ind.id] = ind
                self.tokens[ind.id] = secrets.token_hex(8)
                self.experiments[name] = replace(exp, proposals=seq + 1)
                return self._lease_of(ind)
            return NoWork(done=True, message="every experiment is done")

    def _lease_of(self, ind: Individual) -> Lease:
        exp = self.experiments[ind.experiment]
        return Lease(
            experiment=ind.experiment, individual_id=ind.id, proposal_seq=ind.proposal_seq, token=self.tokens[ind.id],
            deadline=ind.lease_deadline or 0.0, attempt=ind.attempts, genome=ind.genome, space=exp.spec.space,
            seed=exp.spec.seed + ind.proposal_seq, training=exp.spec.training,
        )

    def _held(self, individual_id: int, token: str) -> Individual:
        ind = self.individuals.get(individual_id)
        if ind is None:
            raise NotFound(f"no individual {individual_id}")
        if ind.state in ("completed", "failed"):
            raise AlreadyExists(f"individual {individual_id} already has its outcome")
        if self.tokens.get(individual_id) != token or ind.state != "leased":
            raise FailedPrecondition(f"lease of individual {individual_id} is no longer yours")
        if (ind.lease_deadline or 0.0) < time.time():
            raise FailedPrecondition(f"lease of individual {individual_id} expired")
        return ind

    def heartbeat(self, individual_id: int, token: str, worker_id: str) -> float:
        with self.lock:
            self.calls.append(f"heartbeat:{individual_id}")
            ind = self._held(individual_id, token)
            deadline = time.time() + self.lease_timeout_s
            self.individuals[individual_id] = replace(ind, lease_deadline=deadline)
            return deadline

    def report(
        self, individual_id: int, token: str, worker_id: str, metrics: Metrics, lease_next: bool = False
    ) -> Lease | NoWork | None:
        if not 0.0 <= metrics.accuracy <= 1.0:
            raise InvalidArgument(f"accuracy must be in [0, 1], got {metrics.accuracy}")
        with self.lock:
            self.calls.append(f"report:{individual_id}")
            ind = self._held(individual_id, token)
            self.individuals[individual_id] = replace(
                ind, state="completed", accuracy=metrics.accuracy, fitness=metrics.accuracy,
                train_seconds=metrics.train_seconds, latency_ms=metrics.latency_ms, completed_at=time.time(),
            )
            exp = self.experiments[ind.experiment]
            exp = replace(exp, completed=exp.completed + 1)
            if exp.completed >= exp.spec.evaluations:
                exp = replace(exp, state="done")
            self.experiments[ind.experiment] = exp
        if not lease_next:
            return None
        return self.lease(WorkerInfo(worker_id), ind.experiment)

    def fail(self, individual_id: int, token: str, worker_id: str, reason: str, retryable: bool = False) -> None:
        with self.lock:
            self.calls.append(f"fail:{individual_id}:{reason}")
            ind = self._held(individual_id, token)
            self.individuals[individual_id] = replace(ind, state="failed", failure_reason=reason)
            exp = self.experiments[ind.experiment]
            # A failed proposal does not count towards C: let one more be proposed.
            self.experiments[ind.experiment] = replace(exp, failed=exp.failed + 1, proposals=exp.proposals - 1)

    def release(self, individual_id: int, token: str, worker_id: str) -> None:
        with self.lock:
            self.calls.append(f"release:{individual_id}")
            ind = self._held(individual_id, token)
            self.individuals[individual_id] = replace(ind, state="queued", lease_owner=None)
            self.queue.append(individual_id)

    def status(self, experiment: str) -> dict[str, Any]:
        exp = self.get_experiment(experiment)
        return {"experiment": experiment, "completed": exp.completed, "state": exp.state}

    def list_individuals(self, experiment: str, page_size: int, page_token: str, state: str | None) -> Page:
        self.get_experiment(experiment)
        rows = [i for i in self.individuals.values() if i.experiment == experiment and (state is None or i.state == state)]
        start = int(page_token or 0)
        chunk = rows[start : start + page_size]
        nxt = str(start + page_size) if start + page_size < len(rows) else ""
        return Page(tuple(chunk), nxt)


def nb201_spec(name: str = "exp", evaluations: int = 20, **kw: Any) -> ExperimentSpec:
    return ExperimentSpec(name=name, space="nb201", population_size=5, sample_size=2, evaluations=evaluations, **kw)
