"""Early stopping: the rules as pure folds, and the service recording stops from progress reports, refusing
stale ones, and leaving a log from which replay re-derives every decision."""

from __future__ import annotations

import random
import sqlite3

import pytest

from db.memory import MemoryStore
from domain import FailedPrecondition, Lease, Metrics, Progress, WorkerInfo
from evolution import early_stopping as es
from orchestrator.replay import verify_experiment
from orchestrator.service import OrchestratorService, open_service
from tests.builders import Clock, spec

pytestmark = pytest.mark.service

W = WorkerInfo("w")


def test_the_median_rule_compares_best_so_far_with_completed_children_at_the_same_epoch() -> None:
    settings = es.parse_stopping({"rule": "median", "min_completed": 3, "min_epochs": 2})
    state = es.StoppingState()
    for seq, curve in enumerate([[0.3, 0.5], [0.4, 0.6], [0.2, 0.7]]):
        for epoch, acc in enumerate(curve, start=1):
            state, decision = es.progress(settings, state, seq, epoch, acc)
            assert not decision.stop  # fewer than 3 completed children: no decision
        state = es.completed(state, seq)
    # Pool at epoch 2: 0.5, 0.6, 0.7 (median 0.6). Epoch 1 is below min_epochs: never a decision there.
    state, decision = es.progress(settings, state, 10, 1, 0.0)
    assert not decision.stop
    state, decision = es.progress(settings, state, 10, 2, 0.55)
    assert decision.stop and "below the median 0.6" in decision.reason
    # Best so far counts: a child that reached 0.65 at epoch 1 goes on at epoch 2 with 0.1.
    state, _ = es.progress(settings, state, 11, 1, 0.65)
    state, decision = es.progress(settings, state, 11, 2, 0.1)
    assert not decision.stop
    # A child that ends otherwise leaves no trace in the pool.
    assert es.ended(state, 11).running.keys() == {10}


def test_asha_keeps_the_top_third_at_each_rung() -> None:
    settings = es.parse_stopping({"rule": "asha", "reduction_factor": 3, "min_budget": 1})
    state = es.StoppingState()
    decisions = []
    for seq, acc in enumerate([0.5, 0.4, 0.6, 0.3, 0.7, 0.55]):
        state, decision = es.progress(settings, state, seq, 1, acc)
        decisions.append(decision.stop)
    # Rung 1: the first is the best so far; then each must beat the top-1 (fewer than 6 values) ...
    assert decisions == [False, True, False, True, False, True]
    # Epoch 2 is not a rung (1, 3, 9, ...): no decision; epoch 3 is.
    state, decision = es.progress(settings, state, 4, 2, 0.1)
    assert not decision.stop
    state, decision = es.progress(settings, state, 4, 3, 0.1)
    assert not decision.stop  # the first at rung 3
    state, decision = es.progress(settings, state, 2, 3, 0.05)
    assert decision.stop


@pytest.mark.parametrize("bad", [{"rule": "sometimes"}, {"rule": "median", "min_completed": 0},
                                 {"rule": "asha", "reduction_factor": 1}, {"rule": "median", "patience": 3},
                                 {"join_population": "yes"}, 7])
def test_bad_settings_are_refused(bad: object) -> None:
    with pytest.raises(es.StoppingError):
        es.parse_stopping(bad)


def _run(service: OrchestratorService, name: str, epochs: int = 4, seed: int = 0) -> tuple[int, int]:
    """Drive the experiment to its end: each child reports progress per epoch (a random learning curve),
    then its final accuracy unless it was stopped. Returns (stopped, completed) as seen by the worker."""
    rng = random.Random(seed)
    stopped = completed = 0
    while True:
        lease = service.lease(W, name)
        if not isinstance(lease, Lease):
            return stopped, completed
        quality = rng.random()
        went_on = True
        for epoch in range(1, epochs + 1):
            answer = service.progress(lease.individual_id, lease.token, "w",
                                      Progress(epoch, quality * epoch / epochs, 2.0 - quality, 3.0 * epoch))
            if answer.stop:
                went_on = False
                break
        if went_on:
            service.report(lease.individual_id, lease.token, "w", Metrics(accuracy=quality, train_seconds=12.0))
            completed += 1
        else:
            stopped += 1


@pytest.mark.parametrize("join", [False, True])
def test_the_service_stops_children_and_replay_re_derives_every_decision(join: bool) -> None:
    service = OrchestratorService(MemoryStore(), clock=Clock())
    service.create_experiment(spec("es", evaluations=40, population=6,
                                   early_stopping={"rule": "median", "min_completed": 4, "join_population": join}))
    stopped, completed = _run(service, "es")
    status = service.status("es")
    assert stopped > 0 and completed > 0
    assert (status["state"], status["completed"], status["stopped"]) == ("done", completed, stopped)
    assert completed + stopped == 40  # stopped children count towards C by default
    assert status["saved_train_seconds"] > 0
    stopped_rows = [i for i in service.list_individuals("es", 100, "", "stopped").individuals]
    assert len(stopped_rows) == stopped and all(r.accuracy is not None and r.epochs for r in stopped_rows)
    assert all(r.in_population == (join and r.in_population) for r in stopped_rows)
    if join:
        assert any(r.completion_rank is not None for r in stopped_rows)
    report = verify_experiment(service.store, "es")
    assert report.ok, report.problems


def test_replay_notices_a_stop_the_rule_would_not_take(sqlite_url: str) -> None:
    service = open_service(sqlite_url, clock=Clock())
    try:
        service.create_experiment(spec("tamper", evaluations=30, population=6,
                                       early_stopping={"rule": "median", "min_completed": 4}))
        _run(service, "tamper")
        assert verify_experiment(service.store, "tamper").ok
    finally:
        service.store.close()
    # Rewrite the log so that a child the rule stopped reads as failed, and one it let go on as stopped.
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        first_stop = conn.execute("SELECT min(seq) FROM events WHERE kind = 'stopped'").fetchone()[0]
        conn.execute("UPDATE events SET kind = 'failed', data_json = '{\"reason\":\"edited\"}' WHERE seq = ?",
                     (first_stop,))
        completion = conn.execute("SELECT max(seq) FROM events WHERE kind = 'completed'").fetchone()[0]
        conn.execute("UPDATE events SET kind = 'stopped', data_json = '{\"epoch\":4}' WHERE seq = ?", (completion,))
    service = open_service(sqlite_url)
    try:
        report = verify_experiment(service.store, "tamper")
    finally:
        service.store.close()
    assert not report.ok
    assert any(f"event {first_stop}:" in p and "does not stop it" in p for p in report.problems)
    assert any(f"event {completion}:" in p and "re-derives no stop" in p for p in report.problems)


def test_stale_progress_is_refused_and_changes_nothing() -> None:
    service = OrchestratorService(MemoryStore(), clock=Clock())
    service.create_experiment(spec("stale", lease_timeout_s=5, early_stopping="median"))
    lease = service.lease(W, "stale")
    assert isinstance(lease, Lease)
    service.progress(lease.individual_id, lease.token, "w", Progress(1, 0.4, 1.0, 2.0))
    before = service.status("stale")["seq"]
    with pytest.raises(FailedPrecondition):
        service.progress(lease.individual_id, "forged-token", "w", Progress(2, 0.9, 0.5, 4.0))
    assert service.status("stale")["seq"] == before
    # An old epoch again is answered without a write; the stored progress keeps epoch 1.
    assert not service.progress(lease.individual_id, lease.token, "w", Progress(1, 0.99, 0.1, 9.0)).stop
    assert service.status("stale")["seq"] == before
    running = service.status("stale")["running"]
    assert running == [{"proposal_seq": lease.proposal_seq, "worker_id": "w", "epoch": 1, "accuracy": 0.4,
                        "seconds": 2.0}]


def test_stopped_children_that_do_not_count_free_a_slot() -> None:
    service = OrchestratorService(MemoryStore(), clock=Clock())
    service.create_experiment(spec("free", evaluations=20, population=4,
                                   early_stopping={"rule": "median", "min_completed": 3,
                                                   "count_towards_budget": False}))
    stopped, completed = _run(service, "free")
    status = service.status("free")
    assert status["completed"] == completed == 20 and status["stopped"] == stopped > 0
