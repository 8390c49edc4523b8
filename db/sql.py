"""The SQLAlchemy store (SQLite and PostgreSQL): lean Core statements behind the StoreTx contract."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import fields
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from db.models import EventRow, ExperimentRow, IndividualRow, WorkerRow
from db.repository import (
    EXPERIMENT_MUTABLE,
    INDIVIDUAL_MUTABLE,
    DuplicateName,
    EventRecord,
    ExperimentRecord,
    IndividualRecord,
    NewIndividual,
    StoreUnavailable,
    WorkerRecord,
)

E = ExperimentRow.__table__
I = IndividualRow.__table__  # noqa: E741 - the table everyone reads as "I"
V = EventRow.__table__
W = WorkerRow.__table__


def _columns(table: Any, record: type) -> list[Any]:
    return [table.c[f.name] for f in fields(record)]


_E_COLS = _columns(E, ExperimentRecord)
_I_COLS = _columns(I, IndividualRecord)
_V_COLS = _columns(V, EventRecord)
_W_COLS = _columns(W, WorkerRecord)


def _names(record: type) -> str:
    return ", ".join(f.name for f in fields(record))


def _prefixed(alias: str, record: type) -> str:
    return ", ".join(f"{alias}.{f.name}" for f in fields(record))


_EN, _IN, _WN = _names(ExperimentRecord), _names(IndividualRecord), _names(WorkerRecord)
_N_IND = len(fields(IndividualRecord))
_NEW = [f.name for f in fields(NewIndividual)] + ["in_population", "improved"]
_EVENT = [f.name for f in fields(EventRecord)]
_WORKER = [f.name for f in fields(WorkerRecord)]


#: Boolean predicates spelled exactly as the partial indexes (db.models) spell them, per dialect.
_TRUE = {col: {False: f"{col} = 1", True: col} for col in ("in_population", "improved")}


def _hot_sql(postgres: bool) -> dict[str, str]:
    """The hot path's statements as plain SQL for one dialect.

    Building and cache-keying SQLAlchemy statements costs several times what SQLite itself spends
    on these queries, so the use cases' statements go straight to the driver's cursor (in the
    transaction SQLAlchemy began); everything else uses Core.
    """
    lock = " FOR UPDATE" if postgres else ""
    skip = " FOR UPDATE SKIP LOCKED" if postgres else ""
    sql = {
        "exp_by_name": f"SELECT {_EN} FROM experiments WHERE name = :name",
        "exp_by_id": f"SELECT {_EN} FROM experiments WHERE id = :id",
        "ind_by_id": f"SELECT {_IN} FROM individuals WHERE id = :id",
        "ind_exp": f"SELECT {_prefixed('i', IndividualRecord)}, {_prefixed('e', ExperimentRecord)} "
        "FROM individuals i JOIN experiments e ON e.id = i.experiment_id WHERE i.id = :id",
        "exp_of_ind": f"SELECT {_EN} FROM experiments WHERE id = (SELECT experiment_id FROM individuals WHERE id = :id)",
        "overdue": f"SELECT {_IN} FROM individuals WHERE experiment_id = :eid AND state = 'leased' "
        f"AND lease_deadline < :now ORDER BY lease_deadline LIMIT :limit{skip}",
        "queued": f"SELECT {_IN} FROM individuals WHERE experiment_id = :eid AND state = 'queued' "
        f"ORDER BY proposal_seq LIMIT 1{skip}",
        "population": f"SELECT {_IN} FROM individuals WHERE experiment_id = :eid AND {_TRUE['in_population'][postgres]} "
        "ORDER BY completion_rank",
        "leased": f"SELECT {_IN} FROM individuals WHERE experiment_id = :eid AND state = 'leased' "
        "ORDER BY lease_deadline LIMIT :limit",
        "completions": f"SELECT {_IN} FROM individuals WHERE experiment_id = :eid AND completion_rank IS NOT NULL "
        "AND completion_rank >= :rank ORDER BY completion_rank LIMIT :limit",
        "add_individual": f"INSERT INTO individuals ({', '.join(_NEW)}) VALUES ({', '.join(':' + n for n in _NEW)}) "
        "RETURNING id",
        "add_events": f"INSERT INTO events ({', '.join(_EVENT)}) VALUES ({', '.join(':' + n for n in _EVENT)})",
        "touch_worker": f"INSERT INTO workers ({', '.join(_WORKER)}) VALUES ({', '.join(':' + n for n in _WORKER)}) "
        "ON CONFLICT (worker_id) DO UPDATE SET "
        # An empty host/evaluator (calls other than lease do not carry them) keeps the stored one.
        "host = COALESCE(NULLIF(excluded.host, ''), workers.host), "
        "evaluator = COALESCE(NULLIF(excluded.evaluator, ''), workers.evaluator), "
        "last_seen = excluded.last_seen, "
        "experiment_id = COALESCE(excluded.experiment_id, workers.experiment_id), "
        "current_individual_id = excluded.current_individual_id, "
        "evaluations = workers.evaluations + excluded.evaluations",
    }
    for key in ("exp_by_name", "exp_by_id", "ind_by_id", "exp_of_ind"):
        sql[key + "_lock"] = sql[key] + lock
    return {k: _paramstyle(v, postgres) for k, v in sql.items()}


def _paramstyle(sql: str, postgres: bool) -> str:
    # sqlite3 takes :name; psycopg takes %(name)s.
    return re.sub(r":([A-Za-z_]\w*)", r"%(\1)s", sql) if postgres else sql


_HOT = {False: _hot_sql(False), True: _hot_sql(True)}
_UPDATES: dict[tuple[bool, str, frozenset[str]], str] = {}


def _update_sql(postgres: bool, table: str, keys: frozenset[str]) -> str:
    sql = _UPDATES.get((postgres, table, keys))
    if sql is None:
        sets = ", ".join(f"{k} = :{k}" for k in sorted(keys))
        sql = _paramstyle(f"UPDATE {table} SET {sets} WHERE id = :_id", postgres)
        _UPDATES[(postgres, table, keys)] = sql
    return sql


def _exp(row: Any) -> ExperimentRecord:
    return ExperimentRecord(*row)


def _ind(row: Any) -> IndividualRecord:
    r = list(row)
    # SQLite hands booleans back as 0/1.
    r[20] = None if r[20] is None else bool(r[20])
    r[23] = bool(r[23])
    r[24] = bool(r[24])
    return IndividualRecord(*r)


try:
    import psycopg

    _DRIVER_INTEGRITY: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
    _DRIVER_UNAVAILABLE: tuple[type[BaseException], ...] = (sqlite3.OperationalError, psycopg.OperationalError)
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite works without it
    _DRIVER_INTEGRITY = (sqlite3.IntegrityError,)
    _DRIVER_UNAVAILABLE = (sqlite3.OperationalError,)


_INTEGRITY: tuple[type[BaseException], ...] = (IntegrityError, *_DRIVER_INTEGRITY)
_BROKEN: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, *_DRIVER_UNAVAILABLE)


class SqlTx:
    """One transaction on one connection (see db.repository for the contract)."""

    def __init__(self, conn: Connection, postgres: bool) -> None:
        self._c = conn
        self._pg = postgres
        self._sql = _HOT[postgres]
        # The driver's own cursor, inside the transaction SQLAlchemy began on this connection.
        self._cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def _one(self, key: str, lock: bool, params: Mapping[str, Any]) -> Any:
        # SQLite has no FOR UPDATE; its write transactions are serialized by BEGIN IMMEDIATE instead.
        self._cur.execute(self._sql[key + "_lock" if lock else key], params)
        return self._cur.fetchone()

    def _all(self, key: str, params: Mapping[str, Any]) -> list[Any]:
        self._cur.execute(self._sql[key], params)
        rows: list[Any] = self._cur.fetchall()
        return rows

    def _update(self, table: str, row_id: int, changes: Mapping[str, Any]) -> None:
        self._cur.execute(_update_sql(self._pg, table, frozenset(changes)), {**changes, "_id": row_id})
        if self._cur.rowcount != 1:
            raise KeyError(row_id)

    # --- experiments ---
    def add_experiment(self, name: str, config_json: str, seed: int, now: float) -> ExperimentRecord:
        if self._c.execute(select(E.c.id).where(E.c.name == name)).first() is not None:
            raise DuplicateName(f"experiment {name!r} exists already")
        values: dict[str, Any] = dict(
            name=name, config_json=config_json, seed=seed, state="running", created_at=now, updated_at=now,
            proposals=0, completed=0, failed=0, rejected=0, event_seq=0, best_individual_id=None, best_fitness=None,
            paused_reason=None, consecutive_failures=0, last_failure=None, stopped=0, ranked=0, completed_train_seconds=0.0,
            stopped_train_seconds=0.0,
        )
        try:
            new_id = self._c.execute(insert(ExperimentRow).values(**values).returning(E.c.id)).scalar_one()
        except IntegrityError:
            raise DuplicateName(f"experiment {name!r} exists already") from None
        return ExperimentRecord(id=new_id, **values)

    def experiment(self, name: str, *, lock: bool = False) -> ExperimentRecord | None:
        row = self._one("exp_by_name", lock, {"name": name})
        return None if row is None else _exp(row)

    def experiment_by_id(self, experiment_id: int, *, lock: bool = False) -> ExperimentRecord | None:
        row = self._one("exp_by_id", lock, {"id": experiment_id})
        return None if row is None else _exp(row)

    def experiments(self, state: str | None = None) -> list[ExperimentRecord]:
        stmt = select(*_E_COLS).order_by(E.c.id)
        if state is not None:
            stmt = stmt.where(E.c.state == state)
        return [_exp(r) for r in self._c.execute(stmt)]

    def update_experiment(self, experiment_id: int, changes: Mapping[str, Any]) -> None:
        bad = set(changes) - EXPERIMENT_MUTABLE
        if bad:
            raise ValueError(f"experiment columns not updatable: {sorted(bad)}")
        self._update("experiments", experiment_id, changes)

    # --- individuals ---
    def add_individual(self, new: NewIndividual) -> int:
        values = {name: getattr(new, name) for name in _NEW[:-2]}
        values.update(in_population=False, improved=False)
        # No savepoint around it: a duplicate ends the use case, and the whole transaction rolls back.
        try:
            self._cur.execute(self._sql["add_individual"], values)
            return int(self._cur.fetchone()[0])
        except _INTEGRITY:
            raise ValueError(f"proposal {new.proposal_seq} of experiment {new.experiment_id} exists already") from None

    def individual(self, individual_id: int, *, lock: bool = False) -> IndividualRecord | None:
        row = self._one("ind_by_id", lock, {"id": individual_id})
        return None if row is None else _ind(row)

    def individual_and_experiment(
        self, individual_id: int, *, lock: bool = False
    ) -> tuple[IndividualRecord, ExperimentRecord] | None:
        if lock and self._pg:
            # Experiment row first (the lock order of every use case), then a fresh read of the
            # individual: a join FOR UPDATE could hand back a stale individual after waiting for the lock.
            exp_row = self._one("exp_of_ind", True, {"id": individual_id})
            if exp_row is None:
                return None
            ind_row = self._one("ind_by_id", False, {"id": individual_id})
            return None if ind_row is None else (_ind(ind_row), _exp(exp_row))
        row = self._one("ind_exp", False, {"id": individual_id})
        return None if row is None else (_ind(row[:_N_IND]), _exp(row[_N_IND:]))

    def update_individual(self, individual_id: int, changes: Mapping[str, Any]) -> None:
        bad = set(changes) - INDIVIDUAL_MUTABLE
        if bad:
            raise ValueError(f"individual columns not updatable: {sorted(bad)}")
        self._update("individuals", individual_id, changes)

    def overdue_leases(self, experiment_id: int, now: float, limit: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._all("overdue", {"eid": experiment_id, "now": now, "limit": limit})]

    def next_queued(self, experiment_id: int) -> IndividualRecord | None:
        row = self._one("queued", False, {"eid": experiment_id})
        return None if row is None else _ind(row)

    def population(self, experiment_id: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._all("population", {"eid": experiment_id})]

    def count_states(self, experiment_id: int, states: Iterable[str]) -> dict[str, int]:
        counts = {}
        for state in states:
            # One literal-state query each, so SQLite can answer queued/leased from their partial indexes.
            if not state.isalpha():
                raise ValueError(f"bad state {state!r}")
            self._cur.execute(_paramstyle(f"SELECT count(*) FROM individuals WHERE experiment_id = :eid "
                                          f"AND state = '{state}'", self._pg), {"eid": experiment_id})
            counts[state] = int(self._cur.fetchone()[0])
        return counts

    def top(self, experiment_id: int, k: int) -> list[IndividualRecord]:
        stmt = (
            select(*_I_COLS)
            .where(I.c.experiment_id == experiment_id, I.c.fitness.is_not(None), I.c.state == "completed")
            .order_by(I.c.fitness.desc(), I.c.proposal_seq)
            .limit(k)
        )
        return [_ind(r) for r in self._c.execute(stmt)]

    def improvements(self, experiment_id: int) -> list[IndividualRecord]:
        stmt = (
            select(*_I_COLS)
            .where(I.c.experiment_id == experiment_id, text(_TRUE["improved"][self._pg]))
            .order_by(I.c.completion_rank)
        )
        return [_ind(r) for r in self._c.execute(stmt)]

    def by_completion_rank(self, experiment_id: int, rank: int) -> IndividualRecord | None:
        stmt = select(*_I_COLS).where(I.c.experiment_id == experiment_id, I.c.completion_rank == rank)
        row = self._c.execute(stmt).first()
        return None if row is None else _ind(row)

    def leased(self, experiment_id: int, limit: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._all("leased", {"eid": experiment_id, "limit": limit})]

    def completions(self, experiment_id: int, from_rank: int, limit: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._all("completions", {"eid": experiment_id, "rank": from_rank, "limit": limit})]

    def individuals(
        self, experiment_id: int, after_seq: int, limit: int, state: str | None = None
    ) -> list[IndividualRecord]:
        stmt = select(*_I_COLS).where(I.c.experiment_id == experiment_id, I.c.proposal_seq > after_seq)
        if state is not None:
            stmt = stmt.where(I.c.state == state)
        return [_ind(r) for r in self._c.execute(stmt.order_by(I.c.proposal_seq).limit(limit))]

    def artifacts(self, experiment_id: int, state: str | None = "kept") -> list[IndividualRecord]:
        stmt = select(*_I_COLS).where(I.c.experiment_id == experiment_id)
        # Spelled as the partial index spells it, so SQLite uses the index.
        stmt = stmt.where(text("artifact_state = 'kept'") if state == "kept" else
                          I.c.artifact_state.is_not(None) if state is None else I.c.artifact_state == state)
        return [_ind(r) for r in self._c.execute(stmt.order_by(I.c.proposal_seq))]

    # --- events ---
    def append_events(self, events: Sequence[EventRecord]) -> None:
        if not events:
            return
        try:
            self._cur.executemany(self._sql["add_events"], [{name: getattr(e, name) for name in _EVENT} for e in events])
        except _INTEGRITY:
            raise ValueError("event sequence number taken") from None

    def events(self, experiment_id: int, after_seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        stmt = (
            select(*_V_COLS)
            .where(V.c.experiment_id == experiment_id, V.c.seq > after_seq)
            .order_by(V.c.seq)
            .limit(limit)
        )
        return [EventRecord(*r) for r in self._c.execute(stmt)]

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
        params = dict(
            worker_id=worker_id, host=host, evaluator=evaluator, first_seen=now, last_seen=now,
            experiment_id=experiment_id, current_individual_id=current_individual_id, evaluations=completed,
        )
        self._cur.execute(self._sql["touch_worker"], params)

    def workers(self, experiment_id: int | None = None) -> list[WorkerRecord]:
        stmt = select(*_W_COLS).order_by(W.c.worker_id)
        if experiment_id is not None:
            stmt = stmt.where(W.c.experiment_id == experiment_id)
        return [WorkerRecord(*r) for r in self._c.execute(stmt)]


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SqlStore:
    """A store over one engine. On SQLite, write transactions of this process take a lock first:
    SQLite serializes writers anyway, and threads queueing on a Python lock is far cheaper than
    threads spinning on SQLITE_BUSY."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._lock = nullcontext() if self._pg else threading.Lock()
        # SQLite: one connection kept open (the lock serializes its use), which spares a pool
        # checkout and reset per transaction.
        self._sqlite_conn: Connection | None = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._pg:
            with self.engine.begin() as conn:
                yield conn
            return
        if self._sqlite_conn is None:
            self._sqlite_conn = self.engine.connect()
        conn = self._sqlite_conn
        try:
            with conn.begin():
                yield conn
        except _BROKEN:
            self._sqlite_conn = None
            conn.close()
            raise

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[SqlTx]:
        with self._lock:
            try:
                with self._connection() as conn:
                    yield SqlTx(conn, self._pg)
            except (OperationalError, DBAPIError) as exc:
                if isinstance(exc, IntegrityError):
                    raise
                if exc.connection_invalidated or isinstance(exc, OperationalError):
                    raise StoreUnavailable(f"database unavailable: {_first_line(exc.orig)}") from exc
                raise
            except _DRIVER_UNAVAILABLE as exc:
                raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            if self._sqlite_conn is not None:
                self._sqlite_conn.close()
                self._sqlite_conn = None
        self.engine.dispose()
