"""Latency has one owner: the orchestrator prices each child once, when it is proposed, for the objective's
network; the lease carries that figure, rejection and fitness use it, and a worker overrides it only with a
latency its evaluator measured."""

from __future__ import annotations

import threading

import pytest

import spaces
from db.memory import MemoryStore
from domain import Lease, Metrics, WorkerInfo
from orchestrator.service import OrchestratorService
from tests.builders import nb201_metrics, spec, trial
from worker.evaluators import FunctionEvaluator
from worker.table import TableEvaluator

pytestmark = pytest.mark.service

#: The objective prices a network other than the training preset's (a search child priced at its deployed size).
OBJECTIVE = {"kind": "mnas", "target_ms": 1.0, "latency": {"cells": 3, "filters": 32}}


def _service() -> OrchestratorService:
    service = OrchestratorService(MemoryStore())
    service.create_experiment(spec("lat", objective=OBJECTIVE, evaluations=8, population=4))
    return service


def _priced(lease: Lease) -> tuple[float, bool]:
    space = spaces.get("nb201")
    return space.price(space.parse(lease.genome_json), space.latency_settings(OBJECTIVE["latency"]))


def _complete(service: OrchestratorService, metrics_of: object) -> list[tuple[Lease, dict[str, object]]]:
    done = []
    worker = WorkerInfo("w")
    while True:
        lease = service.lease(worker, "lat")
        if not isinstance(lease, Lease):
            return done
        metrics = metrics_of(lease)  # type: ignore[operator]
        service.report(lease.individual_id, lease.token, "w", metrics)
        row = next(i for i in service.list_individuals("lat", 100, "", None).individuals
                   if i.proposal_seq == lease.proposal_seq)
        done.append((lease, {"latency_ms": row.latency_ms, "fitness": row.fitness, "accuracy": row.accuracy}))


def test_the_lease_carries_the_latency_of_the_objectives_network() -> None:
    service = _service()
    lease = service.lease(WorkerInfo("w"), "lat")
    assert isinstance(lease, Lease)
    latency, fits = _priced(lease)
    assert lease.latency_ms == pytest.approx(latency) and lease.fits_on_chip == fits
    standard = spaces.get("nb201")
    assert lease.latency_ms != pytest.approx(standard.price(standard.parse(lease.genome_json),
                                                            standard.latency_settings())[0])


def test_an_evaluator_that_measures_nothing_keeps_the_priced_latency() -> None:
    # The table evaluator (like the train evaluator) reports accuracy and cost, never a latency.
    evaluator = TableEvaluator()
    service = _service()
    done = _complete(service, lambda lease: evaluator.evaluate(trial(lease.genome_json), threading.Event()))
    assert len(done) == 8
    for lease, row in done:
        latency, _ = _priced(lease)
        assert row["latency_ms"] == pytest.approx(latency)
        # Fitness is the MnasNet reward of that very latency.
        assert row["fitness"] == pytest.approx(row["accuracy"] * (latency / 1.0) ** -0.07)


def test_a_measured_latency_overrides_the_priced_one() -> None:
    measured = FunctionEvaluator(lambda t: {"accuracy": nb201_metrics(t.genome_json).accuracy, "latency_ms": 7.5},
                                 "mine:measure")
    service = _service()
    done = _complete(service, lambda lease: measured.evaluate(trial(lease.genome_json), threading.Event()))
    assert done and all(row["latency_ms"] == 7.5 for _, row in done)
    assert all(row["fitness"] == pytest.approx(row["accuracy"] * 7.5 ** -0.07) for _, row in done)


def test_a_report_without_latency_still_gets_one_for_rows_proposed_before_prices_were_stored() -> None:
    service = _service()
    lease = service.lease(WorkerInfo("w"), "lat")
    assert isinstance(lease, Lease)
    # An individual written by an older version (no priced latency in its row): the report prices it then.
    with service.store.transaction() as tx:
        tx.update_individual(lease.individual_id, {"latency_ms": None, "fits_on_chip": None})
    service.report(lease.individual_id, lease.token, "w", Metrics(accuracy=0.9))
    row = service.list_individuals("lat", 10, "", "completed").individuals[0]
    assert row.latency_ms == pytest.approx(_priced(lease)[0])
