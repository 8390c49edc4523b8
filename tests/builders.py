"""The tests' one place for building things: experiment specs, fake clocks, NB201 metrics, leases and
trials, and a whole experiment driven through the service (not a test module: it holds no tests)."""

from __future__ import annotations

import json
from typing import Any

import spaces
from domain import ExperimentSpec, Lease, Metrics, WorkerInfo
from orchestrator.config import parse_spec
from orchestrator.service import OrchestratorService, open_service
from tables.nb201 import Table, load_table
from worker.trial import Trial

_TABLE: Table | None = None


def nb201_table() -> Table:
    global _TABLE
    _TABLE = _TABLE or load_table(None)
    return _TABLE


class Clock:
    """A clock that moves on by ``step`` seconds at every reading: timestamps are distinct and reproducible."""

    def __init__(self, start: float = 1_800_000_000.0, step: float = 0.25) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def config(name: str = "exp", **changes: Any) -> dict[str, Any]:
    """A small NB201 experiment config (file keys), with ``changes`` applied."""
    base: dict[str, Any] = {"name": name, "space": "nb201", "population": 4, "sample": 2, "evaluations": 12,
                            "seed": 7, "lease_timeout_s": 30}
    return {**base, **changes}


def spec(name: str = "exp", **changes: Any) -> ExperimentSpec:
    """The validated spec of ``config(name, **changes)``."""
    return parse_spec(config(name, **changes))


def nb201_metrics(genome: str | dict[str, Any] | Lease, latency: bool = True) -> Metrics:
    """The table's 12-epoch validation accuracy of an NB201 genome; with ``latency``, a made-up measured
    latency from the table's cost (so the accuracy/latency front has something to show)."""
    if isinstance(genome, Lease):
        genome = genome.genome_json
    g = spaces.parse_genome(json.loads(genome) if isinstance(genome, str) else genome, "nb201")
    table = nb201_table()
    accuracy = table.get(g, "c10v_valid_acc_12ep") / 100.0
    return Metrics(accuracy=accuracy,
                   latency_ms=round(table.get(g, "est_cost_12ep_sec") / 100.0, 3) if latency else None)


def lease(genome: Any = None, *, space: str = "nb201", seed: int = 0, training: dict[str, Any] | None = None,
          proposal_seq: int = 0, experiment: str = "exp") -> Lease:
    """A lease value as a worker receives it (``genome``: a genome object, its JSON data or a JSON string)."""
    if genome is None:
        import random

        genome = spaces.get(space).sample(random.Random(seed))
    if hasattr(genome, "to_json"):
        space = genome.space
        genome = genome.to_json()
    text = genome if isinstance(genome, str) else json.dumps(genome, sort_keys=True, separators=(",", ":"))
    return Lease(experiment=experiment, individual_id=proposal_seq + 1, proposal_seq=proposal_seq, token="t",
                 deadline=0.0, attempt=1, genome_json=text, space=space, seed=seed, training=dict(training or {}))


def trial(genome: Any = None, **kwargs: Any) -> Trial:
    """A Trial for an evaluator, unbound (its evaluator returns metrics; nobody reports)."""
    return Trial(lease(genome, **kwargs))


def build_experiment(url: str, name: str = "exp", evaluations: int = 80, seed: int = 5,
                     clock: Clock | None = None, incidents: bool = True) -> OrchestratorService:
    """Run an NB201 experiment to completion through the service with two workers; with ``incidents``,
    one lease expires (requeued), one is released, one evaluation fails for good. Returns the service
    (open: close its store)."""
    clock = clock or Clock()
    service = open_service(url, clock=clock)
    service.create_experiment(ExperimentSpec(name=name, space="nb201", population_size=10, sample_size=3,
                                             evaluations=evaluations, seed=seed, mutation={"type": "edge_op"},
                                             lease_timeout_s=5.0))
    workers = [WorkerInfo("w-a", "host-a", "table"), WorkerInfo("w-b", "host-b", "table")]
    step = 0
    while True:
        worker = workers[step % 2]
        got = service.lease(worker, name)
        if not isinstance(got, Lease):
            assert got.done or step < 10_000
            if got.done:
                return service
            clock.now += 6.0  # the lost lease expires; the next call requeues it
            continue
        step += 1
        if incidents and step == 15:
            clock.now += 0.1  # w-a goes silent holding this lease
            continue
        if incidents and step == 20:
            service.release(got.individual_id, got.token, worker.worker_id)
            continue
        if incidents and step == 25:
            service.fail(got.individual_id, got.token, worker.worker_id, "out of memory")
            continue
        service.report(got.individual_id, got.token, worker.worker_id, nb201_metrics(got))


class PartialNB201View:
    """NB201 whose decision view leaves out the cells with ``none`` on the first edge (a space whose
    ``decisions`` cannot express every genome: algorithms that learn over decisions must cope)."""

    name = "nb201"

    def __getattr__(self, attr: str) -> Any:
        return getattr(spaces.get("nb201").codec, attr)

    def decisions(self, genome: Any) -> Any:
        from genome import GenomeError

        if genome.ops[0] == "none":
            raise GenomeError("outside the view")
        return spaces.get("nb201").codec.decisions(genome)
