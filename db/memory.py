"""An in-memory store for fast tests: the same contract as the SQL store, with an undo log for rollback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

from db.repository import (
    EXPERIMENT_MUTABLE,
    INDIVIDUAL_MUTABLE,
    DuplicateName,
    EventRecord,
    ExperimentRecord,
    IndividualRecord,
    NewIndividual,
    WorkerRecord,
)


class _Data:
    def __init__(self) -> None:
        self.experiments: dict[int, ExperimentRecord] = {}
        self.names: dict[str, int] = {}
        self.individuals: dict[int, IndividualRecord] = {}
        self.seqs: dict[tuple[int, int], int] = {}
        self.events: dict[int, dict[int, EventRecord]] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.next_experiment_id = 1
        self.next_individual_id = 1


class MemoryTx:
    """Writes apply at once and push an undo step; a failed transaction runs the undo steps backwards."""

    def __init__(self, data: _Data) -> None:
        self._d = data
        self.undo: list[Callable[[], None]] = []

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if key in table:
            old = table[key]
            self.undo.append(lambda: table.__setitem__(key, old))
        else:
            self.undo.append(lambda: table.pop(key, None))
        table[key] = value

    # --- experiments ---
    def add_experiment(self, name: str, config_json: str, seed: int, now: float) -> ExperimentRecord:
        if name in self._d.names:
            raise DuplicateName(f"experiment {name!r} exists already")
        new_id = self._d.next_experiment_id
        self._d.next_experiment_id += 1
        rec = ExperimentRecord(new_id, name, config_json, seed, "running", now, now, 0, 0, 0, 0, 0, None, None)
        self._set(self._d.experiments, new_id, rec)
        self._set(self._d.names, name, new_id)
        self._set(self._d.events, new_id, {})
        return rec

    def experiment(self, name: str, *, lock: bool = False) -> ExperimentRecord | None:
        eid = self._d.names.get(name)
        return None if eid is None else self._d.experiments[eid]

    def experiment_by_id(self, experiment_id: int, *, lock: bool = False) -> ExperimentRecord | None:
        return self._d.experiments.get(experiment_id)

    def experiments(self, state: str | None = None) -> list[ExperimentRecord]:
        return [e for _, e in sorted(self._d.experiments.items()) if state is None or e.state == state]

    def update_experiment(self, experiment_id: int, changes: Mapping[str, Any], *, defer: bool = False) -> None:
        bad = set(changes) - EXPERIMENT_MUTABLE
        if bad:
            raise ValueError(f"experiment columns not updatable: {sorted(bad)}")
        self._set(self._d.experiments, experiment_id, replace(self._d.experiments[experiment_id], **changes))

    # --- individuals ---
    def _of(self, experiment_id: int) -> Iterator[IndividualRecord]:
        return (i for i in self._d.individuals.values() if i.experiment_id == experiment_id)

    def add_individual(self, new: NewIndividual) -> int:
        key = (new.experiment_id, new.proposal_seq)
        if key in self._d.seqs:
            raise ValueError(f"proposal {new.proposal_seq} of experiment {new.experiment_id} exists already")
        if new.experiment_id not in self._d.experiments:
            raise ValueError(f"no experiment {new.experiment_id}")
        new_id = self._d.next_individual_id
        self._d.next_individual_id += 1
        values = asdict(new)
        rec = IndividualRecord(
            id=new_id, fitness=None, accuracy=None, params=None, mult_adds=None,
            train_seconds=None, compile_seconds=None, failure_reason=None,
            completion_rank=None, in_population=False, improved=False, completed_at=None, **values,
        )
        self._set(self._d.individuals, new_id, rec)
        self._set(self._d.seqs, key, new_id)
        return new_id

    def individual(self, individual_id: int, *, lock: bool = False) -> IndividualRecord | None:
        return self._d.individuals.get(individual_id)

    def individual_and_experiment(
        self, individual_id: int, *, lock: bool = False
    ) -> tuple[IndividualRecord, ExperimentRecord] | None:
        ind = self._d.individuals.get(individual_id)
        return None if ind is None else (ind, self._d.experiments[ind.experiment_id])

    def update_individual(self, individual_id: int, changes: Mapping[str, Any], *, defer: bool = False) -> None:
        bad = set(changes) - INDIVIDUAL_MUTABLE
        if bad:
            raise ValueError(f"individual columns not updatable: {sorted(bad)}")
        old = self._d.individuals[individual_id]
        rank = changes.get("completion_rank")
        if (rank is not None and rank != old.completion_rank
                and any(i.completion_rank == rank for i in self._of(old.experiment_id))):
            raise ValueError(f"completion rank {rank} taken")
        self._set(self._d.individuals, individual_id, replace(old, **changes))

    def overdue_leases(self, experiment_id: int, now: float, limit: int) -> list[IndividualRecord]:
        due = [
            i
            for i in self._of(experiment_id)
            if i.state == "leased" and i.lease_deadline is not None and i.lease_deadline < now
        ]
        return sorted(due, key=lambda i: (i.lease_deadline, i.id))[:limit]

    def next_queued(self, experiment_id: int) -> IndividualRecord | None:
        queued = [i for i in self._of(experiment_id) if i.state == "queued"]
        return min(queued, key=lambda i: i.proposal_seq) if queued else None

    def population(self, experiment_id: int) -> list[IndividualRecord]:
        return sorted((i for i in self._of(experiment_id) if i.in_population), key=lambda i: i.completion_rank or 0)

    def count_states(self, experiment_id: int, states: Iterable[str]) -> dict[str, int]:
        counts = dict.fromkeys(states, 0)
        for i in self._of(experiment_id):
            if i.state in counts:
                counts[i.state] += 1
        return counts

    def top(self, experiment_id: int, k: int) -> list[IndividualRecord]:
        done = [i for i in self._of(experiment_id) if i.state == "completed" and i.fitness is not None]
        return sorted(done, key=lambda i: (-(i.fitness or 0.0), i.proposal_seq))[:k]

    def improvements(self, experiment_id: int) -> list[IndividualRecord]:
        return sorted((i for i in self._of(experiment_id) if i.improved), key=lambda i: i.completion_rank or 0)

    def by_completion_rank(self, experiment_id: int, rank: int) -> IndividualRecord | None:
        return next((i for i in self._of(experiment_id) if i.completion_rank == rank), None)

    def leased(self, experiment_id: int, limit: int) -> list[IndividualRecord]:
        rows = [i for i in self._of(experiment_id) if i.state == "leased"]
        return sorted(rows, key=lambda i: (i.lease_deadline or 0.0, i.id))[:limit]

    def completions(self, experiment_id: int, from_rank: int, limit: int) -> list[IndividualRecord]:
        done = [i for i in self._of(experiment_id) if i.completion_rank is not None and i.completion_rank >= from_rank]
        return sorted(done, key=lambda i: i.completion_rank or 0)[:limit]

    def individuals(
        self, experiment_id: int, after_seq: int, limit: int, state: str | None = None
    ) -> list[IndividualRecord]:
        rows = [i for i in self._of(experiment_id) if i.proposal_seq > after_seq and (state is None or i.state == state)]
        return sorted(rows, key=lambda i: i.proposal_seq)[:limit]

    def artifacts(self, experiment_id: int, state: str | None = "kept") -> list[IndividualRecord]:
        rows = [i for i in self._of(experiment_id)
                if i.artifact_state is not None and (state is None or i.artifact_state == state)]
        return sorted(rows, key=lambda i: i.proposal_seq)

    # --- events ---
    def append_events(self, events: Sequence[EventRecord]) -> None:
        seen: set[tuple[int, int]] = set()
        for e in events:
            log = self._d.events.get(e.experiment_id)
            if log is None:
                raise ValueError(f"no experiment {e.experiment_id}")
            if e.seq in log or (e.experiment_id, e.seq) in seen:
                raise ValueError("event sequence number taken")
            seen.add((e.experiment_id, e.seq))
        for e in events:
            self._set(self._d.events[e.experiment_id], e.seq, e)

    def events(self, experiment_id: int, after_seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        log = self._d.events.get(experiment_id, {})
        return [log[s] for s in sorted(s for s in log if s > after_seq)][:limit]

    # --- workers ---
    def touch_worker(
        self,
        worker_id: str,
        host: str,
        evaluator: str,
        now: float,
        experiment_id: int | None,
        current_individual_id: int | None,
        completed: int = 0,
    ) -> None:
        old = self._d.workers.get(worker_id)
        if old is None:
            rec = WorkerRecord(worker_id, host, evaluator, now, now, experiment_id, current_individual_id, completed)
        else:
            rec = WorkerRecord(
                worker_id,
                host or old.host,
                evaluator or old.evaluator,
                old.first_seen,
                now,
                experiment_id if experiment_id is not None else old.experiment_id,
                current_individual_id,
                old.evaluations + completed,
            )
        self._set(self._d.workers, worker_id, rec)

    def workers(self, experiment_id: int | None = None) -> list[WorkerRecord]:
        return [
            w for _, w in sorted(self._d.workers.items()) if experiment_id is None or w.experiment_id == experiment_id
        ]


class MemoryStore:
    """One process-wide lock makes every transaction serializable, as SQLite's single writer does."""

    def __init__(self) -> None:
        self._data = _Data()
        self._lock = threading.RLock()

    @property
    def dialect(self) -> str:
        return "memory"

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        with self._lock:
            tx = MemoryTx(self._data)
            try:
                yield tx
            except BaseException:
                for step in reversed(tx.undo):
                    step()
                raise

    def close(self) -> None:
        pass
