"""Hardware-aware objectives through the real service: pre-training rejection, fitness, and the search's drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from db import open_store
from domain import InvalidArgument, Lease, Metrics, WorkerInfo
from orchestrator.config import parse_spec
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService

pytestmark = pytest.mark.service

_BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "latency_objective.py"
_spec = importlib.util.spec_from_file_location("latency_objective_bench", _BENCH)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_latency_constrained_search_ends_with_lower_median_latency() -> None:
    accuracy = bench.run_one(bench.OBJECTIVES["accuracy"], 150, 20, 5, seed=1)
    constrained = bench.run_one(bench.OBJECTIVES["latency-constrained"], 150, 20, 5, seed=1)
    assert accuracy["completed"] == constrained["completed"] == 150
    assert constrained["population_median_latency_ms"] < accuracy["population_median_latency_ms"] - 0.05
    assert constrained["rejected_before_training"] > 0
    assert accuracy["rejected_before_training"] == 0


def test_children_over_the_limit_are_rejected_before_training_and_replay_verifies() -> None:
    service = OrchestratorService(open_store("memory://"))
    service.create_experiment(parse_spec({
        "name": "lim", "space": "nb201", "population": 5, "sample": 2, "evaluations": 40, "seed": 3,
        "objective": {"kind": "accuracy", "max_latency_ms": 1.0},
    }))
    worker = WorkerInfo("w")
    got: Any = service.lease(worker, "lim")
    while isinstance(got, Lease):
        # No latency in the report: the orchestrator fills it from the same simulator.
        got = service.report(got.individual_id, got.token, "w", Metrics(accuracy=0.5), lease_next=True)
    exp = service.get_experiment("lim")
    assert exp.completed == 40 and exp.rejected > 0
    rejected = service.list_individuals("lim", 1000, "", "rejected").individuals
    completed = service.list_individuals("lim", 1000, "", "completed").individuals
    assert len(rejected) == exp.rejected
    assert all(r.latency_ms is not None and r.latency_ms > 1.0 and r.attempts == 0 for r in rejected)
    assert all("before" not in (r.failure_reason or "") and "max_latency_ms" in (r.failure_reason or "") for r in rejected)
    assert all(c.latency_ms is not None and c.latency_ms <= 1.0 for c in completed)
    assert service.status("lim")["rejected"] == exp.rejected
    assert verify_experiment(service.store, "lim").ok


@pytest.mark.parametrize(("latency", "message"), [
    ({"device": "tpu9"}, "device"), ({"cells": 0}, "cells"), ({"clock_mhz": 300}, "clock"), ({"depth": 3}, "unknown"),
])
def test_bad_latency_settings_are_rejected(latency: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_spec({"name": "x", "space": "nb201", "population": 5, "sample": 2, "evaluations": 4,
                    "objective": {"kind": "accuracy", "latency": latency}})
