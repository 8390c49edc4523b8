"""The orchestrator's status use case produces documents the ui schema accepts and the view renders."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from db.memory import MemoryStore
from domain import ExperimentSpec, Lease, Metrics, WorkerInfo
from orchestrator.service import OrchestratorService
from tests.builders import Clock
from ui.schema import snapshot_problems
from ui.status import render_plain, render_status

pytestmark = pytest.mark.service


def _render(doc: dict[str, object]) -> str:
    console = Console(record=True, width=100)
    console.print(render_status(doc))
    return console.export_text()


def test_service_status_conforms_and_renders_from_empty_to_done() -> None:
    clock = Clock(1_000_000.0, step=0.0)
    service = OrchestratorService(MemoryStore(), clock=clock)
    spec = ExperimentSpec(name="ui-contract", space="nb201", population_size=4, sample_size=2, evaluations=10, seed=7)
    service.create_experiment(spec)

    empty = json.loads(json.dumps(service.status("ui-contract")))  # what --json prints, read back
    assert snapshot_problems(empty) == []
    text = _render(empty)
    assert "0 / 10" in text and "empty population" in text and "no completed individuals yet" in text

    worker = WorkerInfo(worker_id="w-1", host="node1", evaluator="table")
    for i in range(10):
        lease = service.lease(worker, "ui-contract")
        assert isinstance(lease, Lease)
        clock.now += 60.0
        # Accuracy rises with proposal number and latency falls every other one: a front of several points.
        service.report(lease.individual_id, lease.token, worker.worker_id,
                       Metrics(accuracy=0.80 + 0.01 * i, latency_ms=5.0 - 0.5 * (i % 2) - 0.1 * i))
        doc = json.loads(json.dumps(service.status("ui-contract")))
        assert snapshot_problems(doc) == [], (i, snapshot_problems(doc))

    assert doc["completed"] == 10 and doc["state"] == "done"
    assert abs(doc["best"]["accuracy"] - 0.89) < 1e-9
    text = _render(doc)
    assert "10 / 10 (100.0%)" in text and doc["best"]["fingerprint"] in text and "w-1" in text
    assert "on the front" in text
    assert render_plain(doc).startswith("ui-contract done | 10/10 (100.0%)")
