"""The circuit breaker: an experiment that makes no completion in N failures or rejections in a row is
paused with the reason (visible in status and the log), and resumes when asked."""

from __future__ import annotations

import pytest

from db.memory import MemoryStore
from domain import FailedPrecondition, Lease, NoWork, WorkerInfo
from orchestrator.logfold import LogFold
from orchestrator.service import OrchestratorService
from tests.builders import nb201_metrics, spec

pytestmark = pytest.mark.service

W = WorkerInfo("w")


def _service(**changes: object) -> OrchestratorService:
    service = OrchestratorService(MemoryStore())
    service.create_experiment(spec("cb", evaluations=50, **changes))
    return service


def _fail(service: OrchestratorService, n: int, reason: str = "CUDA out of memory") -> list[Lease | NoWork]:
    out: list[Lease | NoWork] = []
    for i in range(n):
        got = service.lease(W, "cb")
        out.append(got)
        if isinstance(got, Lease):
            service.fail(got.individual_id, got.token, "w", f"{reason} #{i}")
    return out


def test_failures_in_a_row_pause_the_experiment_with_the_reason() -> None:
    service = _service(max_consecutive_failures=5)
    got = _fail(service, 5)
    assert all(isinstance(g, Lease) for g in got)
    status = service.status("cb")
    assert status["state"] == "paused" and status["failed"] == 5
    assert status["consecutive_failures"] == 5 and status["last_failure"] == "CUDA out of memory #4"
    assert "5 failures or rejections in a row" in status["paused_reason"]
    assert "CUDA out of memory #4" in status["paused_reason"] and "amoeba experiment resume cb" in status["paused_reason"]
    # Paused: nothing more is leased (and nothing more fails).
    paused = service.lease(W, "cb")
    assert isinstance(paused, NoWork) and not paused.done and "paused" in paused.message
    assert service.get_experiment("cb").paused_reason == status["paused_reason"]


def test_a_completion_resets_the_count() -> None:
    service = _service(max_consecutive_failures=3)
    _fail(service, 2)
    lease = service.lease(W, "cb")
    assert isinstance(lease, Lease)
    service.report(lease.individual_id, lease.token, "w", nb201_metrics(lease))
    assert service.status("cb")["consecutive_failures"] == 0
    _fail(service, 2)
    assert service.status("cb")["state"] == "running"
    _fail(service, 1)
    assert service.status("cb")["state"] == "paused"


def test_children_rejected_before_training_trip_it_too() -> None:
    # No NB201 child can be this fast: every proposal is rejected by the latency constraint.
    service = _service(objective={"kind": "accuracy", "max_latency_ms": 0.0001}, max_consecutive_failures=25)
    got = service.lease(W, "cb")
    assert isinstance(got, NoWork) and "paused after 25" in got.message
    status = service.status("cb")
    assert (status["state"], status["rejected"], status["proposals"]) == ("paused", 25, 25)
    assert "over the objective's max_latency_ms" in status["last_failure"]


def test_resume_starts_afresh_and_pause_resume_refuse_the_wrong_state() -> None:
    service = _service(max_consecutive_failures=2)
    _fail(service, 2)
    assert service.resume("cb").state == "running"
    status = service.status("cb")
    assert status["consecutive_failures"] == 0 and status["paused_reason"] is None
    assert isinstance(service.lease(W, "cb"), Lease)
    with pytest.raises(FailedPrecondition, match="not paused"):
        service.resume("cb")
    assert service.pause("cb", "cluster maintenance").paused_reason == "cluster maintenance"
    with pytest.raises(FailedPrecondition, match="not running"):
        service.pause("cb")
    assert service.status("cb")["paused_reason"] == "cluster maintenance"


def test_zero_turns_it_off() -> None:
    service = _service(max_consecutive_failures=0)
    _fail(service, 30)
    assert service.status("cb")["state"] == "running"


def test_the_log_folds_to_the_same_pause_and_resume() -> None:
    service = _service(max_consecutive_failures=3)
    _fail(service, 3)
    paused_status = service.status("cb")
    service.resume("cb")
    with service.store.transaction() as tx:
        exp = tx.experiment("cb")
        assert exp is not None
        events = tx.events(exp.id, 0, 10_000)
        kinds = [e.kind for e in events]
        assert "paused" in kinds and kinds[-1] == "resumed"
        at_pause = kinds.index("paused") + 1
        spec_ = service.get_experiment("cb").spec

        def genomes(seqs: object) -> dict[int, tuple[str, int | None, str]]:
            return {r.proposal_seq: (r.genome_json, r.parent_seq, r.fingerprint) for r in tx.individuals(exp.id, -1, 1000)}

        fold = LogFold(spec_, exp.created_at, genomes)
        fold.apply(events[:at_pause])
        facts = fold.facts("cb", {}, 10)
        assert (facts.state, facts.paused_reason, facts.consecutive_failures) == (
            "paused", paused_status["paused_reason"], 3)
        fold.apply(events[at_pause:])
        facts = fold.facts("cb", {}, 10)
        assert (facts.state, facts.paused_reason, facts.consecutive_failures) == ("running", None, 0)
