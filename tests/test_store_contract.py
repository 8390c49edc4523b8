"""The store contract (db.repository), one suite run against the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest

from db import DuplicateName, EventRecord, NewIndividual, Store

pytestmark = pytest.mark.contract


def new(exp_id: int, seq: int, state: str = "queued", **kw: object) -> NewIndividual:
    values: dict[str, object] = dict(
        experiment_id=exp_id, proposal_seq=seq, genome_json=f'{{"g":{seq}}}', fingerprint=f"{seq:016x}",
        parent_seq=None, mutation="random", training_seed=seq * 7, state=state, created_at=100.0 + seq,
    )
    values.update(kw)
    return NewIndividual(**values)  # type: ignore[arg-type]


def test_experiments_add_get_list_update(store: Store) -> None:
    with store.transaction() as tx:
        a = tx.add_experiment("a", '{"x":1}', 7, 10.0)
        b = tx.add_experiment("b", "{}", 8, 11.0)
    assert (a.name, a.seed, a.state, a.proposals, a.completed, a.event_seq) == ("a", 7, "running", 0, 0, 0)
    with store.transaction() as tx:
        assert tx.experiment("a") == a
        assert tx.experiment_by_id(b.id, lock=True) == b
        assert tx.experiment("nope") is None and tx.experiment_by_id(10**9) is None
        tx.update_experiment(a.id, {"state": "done", "completed": 5, "best_fitness": 0.5, "best_individual_id": 3})
    with store.transaction() as tx:
        assert [e.name for e in tx.experiments()] == ["a", "b"]
        assert [e.name for e in tx.experiments("running")] == ["b"]
        got = tx.experiment("a")
        assert got is not None and (got.state, got.completed, got.best_fitness) == ("done", 5, 0.5)
    # records are values: the earlier copy did not change
    assert a.state == "running" and a.completed == 0


def test_duplicate_name_unknown_ids_and_bad_columns(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
    with pytest.raises(DuplicateName), store.transaction() as tx:
        tx.add_experiment("a", "{}", 2, 1.0)
    with store.transaction() as tx:
        with pytest.raises(KeyError):
            tx.update_experiment(10**9, {"completed": 1})
        with pytest.raises(ValueError):
            tx.update_experiment(exp.id, {"name": "b"})
        with pytest.raises(KeyError):
            tx.update_individual(10**9, {"state": "failed"})
        ind = tx.add_individual(new(exp.id, 0))
        with pytest.raises(ValueError):
            tx.update_individual(ind, {"genome_json": "{}"})
    with pytest.raises(ValueError), store.transaction() as tx:
        tx.add_individual(new(exp.id, 0))


def test_an_exception_rolls_back_every_write(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        first = tx.add_individual(new(exp.id, 0))
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_experiment("b", "{}", 1, 0.0)
        tx.add_individual(new(exp.id, 1))
        tx.update_individual(first, {"state": "leased", "lease_token": "t"})
        tx.update_experiment(exp.id, {"proposals": 2, "event_seq": 1})
        tx.append_events([EventRecord(exp.id, 1, "proposed", 1.0, first, 0, "{}")])
        tx.touch_worker("w", "h", "table", 1.0, exp.id, first)
        raise RuntimeError("boom")
    with store.transaction() as tx:
        assert tx.experiment("b") is None
        got = tx.experiment("a")
        assert got is not None and got.proposals == 0 and got.event_seq == 0
        ind = tx.individual(first)
        assert ind is not None and ind.state == "queued" and ind.lease_token is None
        assert tx.individuals(exp.id, -1, 10) == [ind]
        assert tx.events(exp.id) == []
        assert tx.workers() == []


def test_individual_round_trip_and_update(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        iid = tx.add_individual(new(exp.id, 3, "leased", parent_seq=1, attempts=1, lease_owner="w", lease_token="tok",
                                    lease_deadline=50.0, leased_at=20.0))
    with store.transaction() as tx:
        ind = tx.individual(iid, lock=True)
        assert ind is not None
        assert (ind.proposal_seq, ind.parent_seq, ind.state, ind.attempts, ind.lease_token) == (3, 1, "leased", 1, "tok")
        assert (ind.in_population, ind.improved, ind.fits_on_chip, ind.fitness) == (False, False, None, None)
        assert tx.individual_and_experiment(iid, lock=True) == (ind, exp)
        assert tx.individual_and_experiment(iid) == (ind, exp)
        assert tx.individual_and_experiment(10**9, lock=True) is None
        tx.update_individual(iid, {"state": "completed", "fitness": 0.9, "accuracy": 0.9, "latency_ms": 1.5,
                                   "params": 3_000_000_000, "mult_adds": 10**12, "fits_on_chip": True,
                                   "completion_rank": 0, "in_population": True, "improved": True})
    with store.transaction() as tx:
        got = tx.individual(iid)
        assert got is not None
        assert dataclasses.replace(ind, state="completed", fitness=0.9, accuracy=0.9, latency_ms=1.5,
                                   params=3_000_000_000, mult_adds=10**12, fits_on_chip=True, completion_rank=0,
                                   in_population=True, improved=True) == got
        assert tx.individual(10**9) is None


def test_queries_the_service_uses(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        other = tx.add_experiment("b", "{}", 1, 0.0)
        ids = {}
        for seq, state, deadline in [(0, "leased", 30.0), (1, "leased", 10.0), (2, "leased", 99.0), (3, "queued", None),
                                     (4, "queued", None), (5, "completed", None), (6, "completed", None),
                                     (7, "completed", None), (8, "failed", None)]:
            ids[seq] = tx.add_individual(new(exp.id, seq, state, lease_deadline=deadline))
        tx.add_individual(new(other.id, 0, "queued"))
        tx.add_individual(new(other.id, 1, "leased", lease_deadline=1.0))
        for rank, (seq, fit) in enumerate([(6, 0.5), (5, 0.7), (7, 0.7)]):
            tx.update_individual(ids[seq], {"completion_rank": rank, "fitness": fit, "in_population": seq != 6,
                                            "improved": seq in (6, 5), "completed_at": 200.0 + rank})
    with store.transaction() as tx:
        assert [i.proposal_seq for i in tx.overdue_leases(exp.id, 50.0, 10)] == [1, 0]
        assert [i.proposal_seq for i in tx.overdue_leases(exp.id, 50.0, 1)] == [1]
        assert tx.overdue_leases(exp.id, 5.0, 10) == []
        queued = tx.next_queued(exp.id)
        assert queued is not None and queued.proposal_seq == 3
        assert [i.proposal_seq for i in tx.population(exp.id)] == [5, 7]
        assert tx.count_states(exp.id, ["queued", "leased"]) == {"queued": 2, "leased": 3}
        assert tx.count_states(other.id, ["queued", "leased", "failed"]) == {"queued": 1, "leased": 1, "failed": 0}
        assert [i.proposal_seq for i in tx.top(exp.id, 2)] == [5, 7]  # tie at 0.7: lower proposal first
        assert [i.proposal_seq for i in tx.top(exp.id, 10)] == [5, 7, 6]
        assert [i.proposal_seq for i in tx.improvements(exp.id)] == [6, 5]
        by_rank = tx.by_completion_rank(exp.id, 2)
        assert by_rank is not None and by_rank.proposal_seq == 7
        assert tx.by_completion_rank(exp.id, 3) is None
        page = tx.individuals(exp.id, -1, 4)
        assert [i.proposal_seq for i in page] == [0, 1, 2, 3]
        assert [i.proposal_seq for i in tx.individuals(exp.id, 3, 4)] == [4, 5, 6, 7]
        assert [i.proposal_seq for i in tx.individuals(exp.id, 7, 4)] == [8]
        assert [i.proposal_seq for i in tx.individuals(exp.id, -1, 10, "completed")] == [5, 6, 7]
        empty = tx.add_experiment("c", "{}", 1, 0.0)
        assert tx.next_queued(empty.id) is None and tx.population(empty.id) == [] and tx.top(empty.id, 3) == []


def test_priced_latency_is_stored_with_the_proposal(store: Store) -> None:
    """NewIndividual carries the latency the service priced at proposal; a row without one keeps None."""
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        priced = tx.add_individual(new(exp.id, 0, latency_ms=2.75, fits_on_chip=False))
        fits = tx.add_individual(new(exp.id, 1, latency_ms=0.5, fits_on_chip=True))
        unpriced = tx.add_individual(new(exp.id, 2))
    with store.transaction() as tx:
        got = [tx.individual(i) for i in (priced, fits, unpriced)]
        assert [(g.latency_ms, g.fits_on_chip) for g in got if g is not None] == [(2.75, False), (0.5, True),
                                                                                   (None, None)]
        # A report with a measured latency replaces the priced one.
        tx.update_individual(priced, {"latency_ms": 3.5, "fits_on_chip": True})
    with store.transaction() as tx:
        again = tx.individual(priced)
        assert again is not None and (again.latency_ms, again.fits_on_chip) == (3.5, True)


def test_completions_walk_the_rank_index_in_pages(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        other = tx.add_experiment("b", "{}", 1, 0.0)
        ids = [tx.add_individual(new(exp.id, seq, "completed")) for seq in range(6)]
        tx.add_individual(new(exp.id, 6, "leased"))  # no rank: never a completion
        # Completion order is not proposal order.
        for rank, seq in enumerate([2, 0, 5, 1, 4, 3]):
            tx.update_individual(ids[seq], {"completion_rank": rank, "fitness": 0.1 * seq})
        o = tx.add_individual(new(other.id, 0, "completed"))
        tx.update_individual(o, {"completion_rank": 0})
    with store.transaction() as tx:
        assert [i.proposal_seq for i in tx.completions(exp.id, 0, 100)] == [2, 0, 5, 1, 4, 3]
        assert [i.completion_rank for i in tx.completions(exp.id, 0, 100)] == [0, 1, 2, 3, 4, 5]
        assert [i.proposal_seq for i in tx.completions(exp.id, 0, 2)] == [2, 0]
        assert [i.proposal_seq for i in tx.completions(exp.id, 2, 2)] == [5, 1]
        assert [i.proposal_seq for i in tx.completions(exp.id, 4, 100)] == [4, 3]
        assert tx.completions(exp.id, 6, 100) == []
        assert [i.proposal_seq for i in tx.completions(other.id, 0, 100)] == [0]
        assert tx.completions(exp.id, 0, 100)[0] == tx.by_completion_rank(exp.id, 0)


def test_completion_rank_is_unique_per_experiment(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        a, b = tx.add_individual(new(exp.id, 0)), tx.add_individual(new(exp.id, 1))
        tx.update_individual(a, {"completion_rank": 0})
    with pytest.raises(Exception), store.transaction() as tx:  # noqa: B017 - backend-specific integrity error
        tx.update_individual(b, {"completion_rank": 0})


def test_event_log_is_ordered_paged_and_unique(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        other = tx.add_experiment("b", "{}", 1, 0.0)
        tx.append_events([EventRecord(exp.id, s, "proposed", float(s), s, s, f'{{"n":{s}}}') for s in (1, 2, 3)])
        tx.append_events([EventRecord(other.id, 1, "experiment_created", 0.0, None, None, "{}")])
        tx.append_events([])
    with store.transaction() as tx:
        log = tx.events(exp.id)
        assert [(e.seq, e.kind, e.data_json) for e in log] == [(1, "proposed", '{"n":1}'), (2, "proposed", '{"n":2}'),
                                                                (3, "proposed", '{"n":3}')]
        assert [e.seq for e in tx.events(exp.id, after_seq=1, limit=1)] == [2]
        assert [e.kind for e in tx.events(other.id)] == ["experiment_created"]
    with pytest.raises(ValueError), store.transaction() as tx:
        tx.append_events([EventRecord(exp.id, 2, "leased", 9.0, None, None, "{}")])
    with store.transaction() as tx:
        assert len(tx.events(exp.id)) == 3


def test_workers_upsert(store: Store) -> None:
    with store.transaction() as tx:
        exp = tx.add_experiment("a", "{}", 1, 0.0)
        other = tx.add_experiment("b", "{}", 1, 0.0)
        tx.touch_worker("w1", "host1", "table", 5.0, exp.id, 11)
        tx.touch_worker("w2", "host2", "train", 6.0, other.id, None)
    with store.transaction() as tx:
        tx.touch_worker("w1", "", "", 9.0, None, None, completed=1)
        tx.touch_worker("w1", "", "", 10.0, None, 12, completed=1)
    with store.transaction() as tx:
        w1, w2 = tx.workers()
        assert (w1.worker_id, w1.host, w1.evaluator, w1.first_seen, w1.last_seen) == ("w1", "host1", "table", 5.0, 10.0)
        assert (w1.experiment_id, w1.current_individual_id, w1.evaluations) == (exp.id, 12, 2)
        assert [w.worker_id for w in tx.workers(other.id)] == ["w2"] and w2.evaluations == 0
