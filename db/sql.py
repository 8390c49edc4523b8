"""The SQL store (SQLite and PostgreSQL): plain SQL on the driver's own connection behind the StoreTx contract.

Building and cache-keying SQLAlchemy statements costs several times what SQLite itself spends on these
queries, so every statement here is SQL text run on the driver's cursor, and the store begins and ends its
transactions itself; SQLAlchemy provides the engine (URL, pool, connect-time settings) and nothing else.

PostgreSQL is bound by round trips, so a transaction sends its statements in as few of them as the data
allows (psycopg's pipeline mode: several statements, one wait):

- ``BEGIN`` travels with the transaction's first statements and ``COMMIT`` with its last writes;
- writes whose answer nobody waits for (events, the worker upsert, an individual's insert, and updates the
  caller marks ``defer=True``) wait in the transaction and travel with its next read or with the commit;
- new individuals take their ids from a block of sequence values fetched along with a read, so an insert
  need not wait for ``RETURNING id``;
- ``overdue_leases`` also reads the experiment's next queued individual, which ``next_queued`` then answers
  unless an individual was written in between;
- ``individual_and_experiment(lock=True)`` locks the experiment and then reads the individual: two
  statements (the second sees what the lock waited for) in one round trip.

A report that leases the next work is then three round trips (lock and read; the completion's writes with
the overdue/queued reads; the child, its events, the counters, the worker and COMMIT). There is no
pre-ping: a connection that a transaction's first round trip finds dead (nothing was committed, nothing
is undone) is replaced and the round trip sent again, so a PostgreSQL restart costs callers nothing once
the database is back. SQLite runs in-process: its statements go one by one, each at once.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

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

try:
    import psycopg
    from psycopg import pq

    from db.pgwire import Answer, wire_for

    _PG_INTEGRITY: tuple[type[BaseException], ...] = (psycopg.IntegrityError,)
    _PG_UNAVAILABLE: tuple[type[BaseException], ...] = (psycopg.OperationalError,)
    _PG_ERROR: tuple[type[BaseException], ...] = (psycopg.Error,)
    _PG_DATA: tuple[type[BaseException], ...] = (psycopg.DataError,)
    _PIPELINE = psycopg.Pipeline.is_supported()
    _BAD = pq.ConnStatus.BAD
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite works without it
    _PG_INTEGRITY = _PG_UNAVAILABLE = _PG_ERROR = _PG_DATA = ()
    _PIPELINE = False

_INTEGRITY: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, *_PG_INTEGRITY)
_UNAVAILABLE: tuple[type[BaseException], ...] = (sqlite3.OperationalError, *_PG_UNAVAILABLE)
_DB_ERROR: tuple[type[BaseException], ...] = (sqlite3.Error, *_PG_ERROR)

#: Proposal ids fetched from the individuals' sequence at once (PostgreSQL), and the level under which a read
#: round trip fetches the next block along.
ID_BLOCK = 64
ID_LOW = 16
#: Dead pooled connections a transaction's first round trip may replace before it gives up (after a database
#: restart every idle connection in the pool is dead).
RECONNECTS = 32


def _names(record: type) -> list[str]:
    return [f.name for f in fields(record)]


def _cols(record: type, alias: str = "") -> str:
    return ", ".join(alias + n for n in _names(record))


_EN, _IN, _WN, _VN = _cols(ExperimentRecord), _cols(IndividualRecord), _cols(WorkerRecord), _cols(EventRecord)
_N_IND = len(fields(IndividualRecord))
_DEADLINE = _names(IndividualRecord).index("lease_deadline")
_IND_BOOLS = tuple(i for i, n in enumerate(_names(IndividualRecord)) if n in ("fits_on_chip", "in_population", "improved"))
_NEW = [*_names(NewIndividual), "in_population", "improved"]
_EVENT = _names(EventRecord)
_WORKER = _names(WorkerRecord)

#: Boolean predicates spelled exactly as the partial indexes (db.models) spell them, per dialect.
_TRUE = {col: {False: f"{col} = 1", True: col} for col in ("in_population", "improved")}


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_NATIVE: dict[str, tuple[bytes, tuple[str, ...]]] = {}


def _native(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``sql`` (written with sqlite3's ``:name`` placeholders) with PostgreSQL's own ``$1, $2, ...`` and the
    parameter names in their order: psycopg's raw cursor then sends it as it is, without parsing it again
    on every call (which it does for statements with more than 50 parameters)."""
    out = _NATIVE.get(sql)
    if out is None:
        names: list[str] = []

        def number(m: re.Match[str]) -> str:
            if m.group(1) not in names:
                names.append(m.group(1))
            return f"${names.index(m.group(1)) + 1}"

        out = _NATIVE[sql] = (_PARAM.sub(number, sql).encode(), tuple(names))
    return out


def _statements(postgres: bool) -> dict[str, str]:
    """Every statement of the store, as SQL text for one dialect (``:name`` placeholders)."""
    lock = " FOR UPDATE" if postgres else ""
    skip = " FOR UPDATE SKIP LOCKED" if postgres else ""
    ind = f"SELECT {_IN} FROM individuals WHERE experiment_id = :eid"
    sql = {
        "exp_by_name": f"SELECT {_EN} FROM experiments WHERE name = :name",
        "exp_by_id": f"SELECT {_EN} FROM experiments WHERE id = :id",
        "exp_of_ind": f"SELECT {_EN} FROM experiments WHERE id = (SELECT experiment_id FROM individuals WHERE id = :id)",
        "experiments": f"SELECT {_EN} FROM experiments ORDER BY id",
        "experiments_in": f"SELECT {_EN} FROM experiments WHERE state = :state ORDER BY id",
        "add_experiment": "INSERT INTO experiments (name, config_json, seed, state, created_at, updated_at, proposals, "
        "completed, failed, rejected, event_seq, consecutive_failures, stopped, ranked, completed_train_seconds, "
        "stopped_train_seconds) VALUES (:name, :config_json, :seed, 'running', :now, :now, 0, 0, 0, 0, 0, 0, 0, 0, "
        "0.0, 0.0) ON CONFLICT (name) DO NOTHING RETURNING id",
        "ind_by_id": f"SELECT {_IN} FROM individuals WHERE id = :id",
        "ind_exp": f"SELECT {_cols(IndividualRecord, 'i.')}, {_cols(ExperimentRecord, 'e.')} "
        "FROM individuals i JOIN experiments e ON e.id = i.experiment_id WHERE i.id = :id",
        "overdue": f"{ind} AND state = 'leased' AND lease_deadline < :now ORDER BY lease_deadline LIMIT :limit{skip}",
        "queued": f"{ind} AND state = 'queued' ORDER BY proposal_seq LIMIT 1{skip}",
        # overdue_leases with the next queued one (k = 0 and 1): one statement.
        "overdue_queued": (
            f"WITH o AS ({ind} AND state = 'leased' AND lease_deadline < :now ORDER BY lease_deadline "
            f"LIMIT :limit{skip}), q AS ({ind} AND state = 'queued' ORDER BY proposal_seq LIMIT 1{skip}) "
            f"SELECT 0 AS k, {_IN} FROM o UNION ALL SELECT 1 AS k, {_IN} FROM q" if postgres else
            f"SELECT * FROM (SELECT 0 AS k, {_IN} FROM individuals WHERE experiment_id = :eid AND state = 'leased' "
            "AND lease_deadline < :now ORDER BY lease_deadline LIMIT :limit) UNION ALL "
            f"SELECT * FROM (SELECT 1 AS k, {_IN} FROM individuals WHERE experiment_id = :eid AND state = 'queued' "
            "ORDER BY proposal_seq LIMIT 1)"),
        "population": f"{ind} AND {_TRUE['in_population'][postgres]} ORDER BY completion_rank",
        "leased": f"{ind} AND state = 'leased' ORDER BY lease_deadline LIMIT :limit",
        "completions": f"{ind} AND completion_rank IS NOT NULL AND completion_rank >= :rank "
        "ORDER BY completion_rank LIMIT :limit",
        "top": f"{ind} AND fitness IS NOT NULL AND state = 'completed' ORDER BY fitness DESC, proposal_seq LIMIT :limit",
        "improvements": f"{ind} AND {_TRUE['improved'][postgres]} ORDER BY completion_rank",
        "by_rank": f"{ind} AND completion_rank = :rank",
        "individuals": f"{ind} AND proposal_seq > :after ORDER BY proposal_seq LIMIT :limit",
        "individuals_in": f"{ind} AND proposal_seq > :after AND state = :state ORDER BY proposal_seq LIMIT :limit",
        # Spelled as the partial index spells it, so SQLite uses the index.
        "artifacts_kept": f"{ind} AND artifact_state = 'kept' ORDER BY proposal_seq",
        "artifacts_any": f"{ind} AND artifact_state IS NOT NULL ORDER BY proposal_seq",
        "artifacts_in": f"{ind} AND artifact_state = :state ORDER BY proposal_seq",
        "add_individual": f"INSERT INTO individuals ({', '.join(_NEW)}) VALUES ({', '.join(':' + n for n in _NEW)}) "
        "RETURNING id",
        "add_individual_id": f"INSERT INTO individuals (id, {', '.join(_NEW)}) "
        f"VALUES (:id, {', '.join(':' + n for n in _NEW)})",
        "new_ids": f"SELECT nextval(pg_get_serial_sequence('individuals', 'id')) FROM generate_series(1, {ID_BLOCK})",
        "events": f"SELECT {_VN} FROM events WHERE experiment_id = :eid AND seq > :after ORDER BY seq LIMIT :limit",
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
        "workers": f"SELECT {_WN} FROM workers ORDER BY worker_id",
        "workers_of": f"SELECT {_WN} FROM workers WHERE experiment_id = :eid ORDER BY worker_id",
    }
    for key in ("exp_by_name", "exp_by_id", "ind_by_id", "exp_of_ind"):
        sql[key + "_lock"] = sql[key] + lock
    # One literal-state query each, so SQLite can answer queued/leased from their partial indexes.
    for state in ("queued", "leased", "completed", "failed", "rejected", "stopped"):
        sql["count_" + state] = _count_sql(state)
    return sql


def _count_sql(state: str) -> str:
    return f"SELECT count(*) FROM individuals WHERE experiment_id = :eid AND state = '{state}'"


_SQL = {False: _statements(False), True: _statements(True)}
_HOT = _SQL  # the name tests/test_store_sql.py checks the SQLite query plans of
_UPDATES: dict[tuple[str, frozenset[str]], str] = {}
_EVENT_INSERTS: dict[int, str] = {}
_MERGED: dict[tuple[tuple[str, ...], tuple[bool, ...]], str] = {}


def _update_sql(table: str, keys: frozenset[str]) -> str:
    sql = _UPDATES.get((table, keys))
    if sql is None:
        sets = ", ".join(f"{k} = :{k}" for k in sorted(keys))
        sql = _UPDATES[(table, keys)] = f"UPDATE {table} SET {sets} WHERE id = :_id"
    return sql


def _events_sql(n: int) -> str:
    """One INSERT of ``n`` events (parameters ``name_k`` for row k)."""
    sql = _EVENT_INSERTS.get(n)
    if sql is None:
        rows = ", ".join("(" + ", ".join(f":{name}_{k}" for name in _EVENT) + ")" for k in range(n))
        sql = _EVENT_INSERTS[n] = f"INSERT INTO events ({', '.join(_EVENT)}) VALUES {rows}"
    return sql


#: What a guarded write that hit no row fails with (see _merged_sql), followed by the write's index.
_MISSING = "amoeba-missing-row"
_MISSING_AT = re.compile(_MISSING + r" (\d+) (\d+)")


def _merged_sql(parts: tuple[str, ...], guarded: tuple[bool, ...]) -> str:
    """PostgreSQL: writes as one statement (data-modifying WITH queries, parameters ``wK_name``) that answers
    one row with each write's row count. A ``guarded`` write that hits no row makes the statement fail (a
    cast of a text naming it: parameter ``_g``, the statement's place in its round trip, and the write's
    index), which aborts the transaction before a COMMIT sent in the same round trip."""
    key = (parts, guarded)
    sql = _MERGED.get(key)
    if sql is None:
        renamed = [_PARAM.sub(f":w{k}_" + r"\1", part) for k, part in enumerate(parts)]
        ctes = ", ".join(f"w{k} AS ({part} RETURNING 1)" for k, part in enumerate(renamed))
        counts = [f"(SELECT count(*) FROM w{k})" for k in range(len(parts))]
        # Not a constant (the count is in it), so the planner cannot fold the cast and fail before running.
        guards = [f"CASE WHEN {n} <> 1 THEN ('{_MISSING} ' || :_g || ' {k} ' || {n})::int END"
                  for k, (n, g) in enumerate(zip(counts, guarded, strict=True)) if g]
        sql = _MERGED[key] = f"WITH {ctes} SELECT {', '.join(counts + guards)}"
    return sql


def _exp(row: Any) -> ExperimentRecord:
    return ExperimentRecord(*row)


def _ind(row: Any) -> IndividualRecord:
    r = list(row)
    # SQLite hands booleans back as 0/1.
    for k in _IND_BOOLS:
        if r[k] is not None:
            r[k] = bool(r[k])
    return IndividualRecord(*r)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(slots=True)
class _Stmt:
    """A statement of a round trip. Writes name their row (``table``, ``key``: None for an append) so that the
    ones touching different rows can share a statement; ``check``: the write must hit exactly one row."""

    sql: str
    params: Mapping[str, Any] | None = None
    table: str | None = None
    key: Any = None
    check: bool = False


_BEGIN, _COMMIT, _ROLLBACK = _Stmt("BEGIN"), _Stmt("COMMIT"), _Stmt("ROLLBACK")


def _merge(writes: Sequence[_Stmt], guard: bool) -> list[tuple[_Stmt, list[_Stmt]]]:
    """Consecutive writes to different rows as one statement each (PostgreSQL); a write to a row already
    written in the group (an update of a row just inserted, a second upsert) starts the next one. With
    ``guard`` (a COMMIT follows in the same round trip) a checked write that hits no row fails its statement."""
    groups: list[list[_Stmt]] = []
    seen: set[tuple[str | None, Any]] = set()
    for w in writes:
        mark = (w.table, w.key)
        if not groups or (w.key is not None and mark in seen):
            groups.append([])
            seen.clear()
        groups[-1].append(w)
        seen.add(mark)
    out = []
    for g, group in enumerate(groups):
        guarded = tuple(guard and w.check for w in group)
        if len(group) == 1 and not guarded[0]:
            out.append((group[0], group))
            continue
        params = {f"w{k}_{name}": value for k, w in enumerate(group) for name, value in (w.params or {}).items()}
        if any(guarded):
            params["_g"] = str(g)
        out.append((_Stmt(_merged_sql(tuple(w.sql for w in group), guarded), params), group))
    return out


class SqlTx:
    """One transaction on one driver connection (see db.repository for the contract; this module's docstring
    for how PostgreSQL's statements are grouped into round trips)."""

    def __init__(self, store: SqlStore, fairy: Any, postgres: bool) -> None:
        self._store = store
        self._fairy: Any = fairy  # SQLAlchemy's pooled connection; its driver_connection runs the SQL
        self._raw: Any = fairy.driver_connection
        self._pg = postgres
        self._sql = _SQL[postgres]
        self._cur: Any = None if postgres else self._raw.cursor()
        # Writes waiting for the next round trip (PostgreSQL), whether BEGIN was sent, and the next queued
        # individual read along with overdue_leases, per experiment (valid until an individual is written).
        self._pending: list[_Stmt] = []
        self.begun = not postgres
        self._ahead: dict[int, Any] = {}

    # --- sending ---------------------------------------------------------------------------------------

    def _trip(self, reads: Sequence[_Stmt], commit: bool = False, ids: bool = False) -> list[list[Any]]:
        """Send the waiting writes, then ``reads`` (then COMMIT), in one round trip; return each read's rows.
        ``ids``: fetch a block of proposal ids along when the store runs low."""
        if not self._pg:
            out = []
            for stmt in reads:
                self._cur.execute(stmt.sql, stmt.params or ())
                out.append(self._cur.fetchall())
            return out
        writes, self._pending = self._pending, []
        merged = _merge(writes, guard=commit)
        extra = [_Stmt(self._sql["new_ids"])] if ids and self._store._ids_low() else []
        body = [m for m, _ in merged] + list(reads) + extra + ([_COMMIT] if commit else [])
        first = not self.begun
        for attempt in range(RECONNECTS + 1):
            try:
                cursors = self._send(([_BEGIN] if first else []) + body)[1 if first else 0:]
                break
            except _PG_UNAVAILABLE:
                # Only the transaction's first round trip is sent again, and only on a dead connection: the
                # database has seen nothing of this transaction that could have been committed.
                if not first or commit or attempt == RECONNECTS or not self._broken():
                    self.begun = True  # a transaction may be open (aborted): the rollback ends it
                    raise
                self._reconnect()
            except _PG_INTEGRITY as exc:
                self.begun = True
                raise ValueError(f"a unique key is taken: {_first_line(exc)}") from None
            except _PG_DATA as exc:
                self.begun = True
                missing = _MISSING_AT.search(str(exc))
                if missing is None:
                    raise
                raise KeyError(merged[int(missing.group(1))][1][int(missing.group(2))].key) from None
        self.begun = not commit
        for (stmt, group), answer in zip(merged, cursors, strict=False):
            counts = answer.rows[0][:len(group)] if stmt is not group[0] else (answer.rowcount,)
            for w, n in zip(group, counts, strict=True):
                if w.check and n != 1:
                    raise KeyError(w.key)
        if extra:
            self._store._add_ids(int(r[0]) for r in cursors[len(merged) + len(reads)].rows)
        return [a.rows for a in cursors[len(merged):len(merged) + len(reads)]]

    def _send(self, batch: Sequence[_Stmt]) -> list[Any]:
        """One round trip (db.pgwire); each statement's answer has ``rows`` and ``rowcount``."""
        out = []
        for stmt in batch:
            query, names = _native(stmt.sql)
            params = stmt.params
            out.append((query, [params[n] for n in names] if params is not None else None))
        if _PIPELINE:
            return wire_for(self._fairy).trip(out)
        answers = []  # pragma: no cover - libpq older than 14: one statement per round trip
        for query, values in out:  # pragma: no cover
            cur = psycopg.RawCursor(self._raw)
            cur.execute(query, values)
            answers.append(Answer(cur.fetchall() if cur.pgresult and cur.pgresult.ntuples else [], cur.rowcount))
        return answers

    def _reconnect(self) -> None:
        old, self._fairy, self._raw = self._fairy, None, None
        self._store._discard(old)
        self._fairy = self._store._checkout()
        self._raw = self._fairy.driver_connection

    def _broken(self) -> bool:
        return self._raw is None or bool(self._raw.broken or self._raw.closed or self._raw.pgconn.status == _BAD)

    def _rows(self, key: str, params: Mapping[str, Any]) -> list[Any]:
        return self._trip([_Stmt(self._sql[key], params)])[0]

    def _one(self, key: str, lock: bool, params: Mapping[str, Any]) -> Any:
        # SQLite has no FOR UPDATE; its write transactions are serialized by BEGIN IMMEDIATE instead.
        rows = self._rows(key + "_lock" if lock else key, params)
        return rows[0] if rows else None

    def _write(self, stmt: _Stmt, defer: bool) -> None:
        if stmt.table == "individuals":
            self._ahead.clear()
        if self._pg:
            self._pending.append(stmt)
            if not defer:
                self._trip([])  # at once: a KeyError belongs to this call
            return
        self._cur.execute(stmt.sql, stmt.params or ())
        if stmt.check and self._cur.rowcount != 1:
            raise KeyError(stmt.key)

    def _update(self, table: str, row_id: int, changes: Mapping[str, Any], defer: bool) -> None:
        self._write(_Stmt(_update_sql(table, frozenset(changes)), {**changes, "_id": row_id}, table, row_id, True),
                    defer)

    def commit(self) -> None:
        if not self._pg:
            self._cur.execute("COMMIT")
        elif self.begun or self._pending:
            self._trip([], commit=True)
        self.begun = False

    def rollback(self) -> None:
        self._pending.clear()
        if not self._pg:
            self._cur.execute("ROLLBACK")
        elif self.begun and self._raw is not None:
            self.begun = False
            self._send([_ROLLBACK])

    # --- experiments ---
    def add_experiment(self, name: str, config_json: str, seed: int, now: float) -> ExperimentRecord:
        rows = self._rows("add_experiment", {"name": name, "config_json": config_json, "seed": seed, "now": now})
        if not rows:
            raise DuplicateName(f"experiment {name!r} exists already")
        return ExperimentRecord(
            id=int(rows[0][0]), name=name, config_json=config_json, seed=seed, state="running", created_at=now,
            updated_at=now, proposals=0, completed=0, failed=0, rejected=0, event_seq=0, best_individual_id=None,
            best_fitness=None,
        )

    def experiment(self, name: str, *, lock: bool = False) -> ExperimentRecord | None:
        row = self._one("exp_by_name", lock, {"name": name})
        return None if row is None else _exp(row)

    def experiment_by_id(self, experiment_id: int, *, lock: bool = False) -> ExperimentRecord | None:
        row = self._one("exp_by_id", lock, {"id": experiment_id})
        return None if row is None else _exp(row)

    def experiments(self, state: str | None = None) -> list[ExperimentRecord]:
        if state is None:
            return [_exp(r) for r in self._rows("experiments", {})]
        return [_exp(r) for r in self._rows("experiments_in", {"state": state})]

    def update_experiment(self, experiment_id: int, changes: Mapping[str, Any], *, defer: bool = False) -> None:
        bad = set(changes) - EXPERIMENT_MUTABLE
        if bad:
            raise ValueError(f"experiment columns not updatable: {sorted(bad)}")
        self._update("experiments", experiment_id, changes, defer)

    # --- individuals ---
    def add_individual(self, new: NewIndividual) -> int:
        values = {name: getattr(new, name) for name in _NEW[:-2]}
        values.update(in_population=False, improved=False)
        self._ahead.clear()
        if self._pg:
            # The id comes from the sequence block; the insert waits for the next round trip. A duplicate
            # proposal then fails there (or at commit) with the same ValueError, ending the transaction.
            new_id = self._store._take_id()
            if new_id is None:
                self._trip([], ids=True)
                new_id = self._store._take_id()
            if new_id is not None:
                self._pending.append(_Stmt(self._sql["add_individual_id"], {"id": new_id, **values}, "individuals",
                                           new_id))
                return new_id
        # No savepoint around it: a duplicate ends the use case, and the whole transaction rolls back.
        try:
            rows = self._rows("add_individual", values)
        except _INTEGRITY:
            raise ValueError(f"proposal {new.proposal_seq} of experiment {new.experiment_id} exists already") from None
        return int(rows[0][0])

    def individual(self, individual_id: int, *, lock: bool = False) -> IndividualRecord | None:
        row = self._one("ind_by_id", lock, {"id": individual_id})
        return None if row is None else _ind(row)

    def individual_and_experiment(
        self, individual_id: int, *, lock: bool = False
    ) -> tuple[IndividualRecord, ExperimentRecord] | None:
        if lock and self._pg:
            # Experiment row first (the lock order of every use case), then a fresh read of the individual, in
            # one round trip: a join FOR UPDATE could hand back a stale individual after waiting for the lock.
            params = {"id": individual_id}
            exp_rows, ind_rows = self._trip([_Stmt(self._sql["exp_of_ind_lock"], params),
                                             _Stmt(self._sql["ind_by_id"], params)])
            if not exp_rows or not ind_rows:
                return None
            return _ind(ind_rows[0]), _exp(exp_rows[0])
        row = self._one("ind_exp", False, {"id": individual_id})
        return None if row is None else (_ind(row[:_N_IND]), _exp(row[_N_IND:]))

    def update_individual(self, individual_id: int, changes: Mapping[str, Any], *, defer: bool = False) -> None:
        bad = set(changes) - INDIVIDUAL_MUTABLE
        if bad:
            raise ValueError(f"individual columns not updatable: {sorted(bad)}")
        self._update("individuals", individual_id, changes, defer)

    def overdue_leases(self, experiment_id: int, now: float, limit: int) -> list[IndividualRecord]:
        # The next queued individual comes along in the same statement (the lease use case asks for it next),
        # and on PostgreSQL proposal ids when the block runs low (a proposal may follow).
        rows = self._trip([_Stmt(self._sql["overdue_queued"], {"eid": experiment_id, "now": now, "limit": limit})],
                          ids=True)[0]
        overdue = sorted((r[1:] for r in rows if r[0] == 0), key=lambda r: r[_DEADLINE])
        self._ahead[experiment_id] = next((r[1:] for r in rows if r[0] == 1), None)
        return [_ind(r) for r in overdue]

    def next_queued(self, experiment_id: int) -> IndividualRecord | None:
        if experiment_id in self._ahead:
            row = self._ahead.pop(experiment_id)
        else:
            row = self._one("queued", False, {"eid": experiment_id})
        return None if row is None else _ind(row)

    def population(self, experiment_id: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._rows("population", {"eid": experiment_id})]

    def count_states(self, experiment_id: int, states: Iterable[str]) -> dict[str, int]:
        wanted = list(states)
        for state in wanted:
            if "count_" + state not in self._sql:
                if not state.isalpha():
                    raise ValueError(f"bad state {state!r}")
                self._sql["count_" + state] = _count_sql(state)
        counts = self._trip([_Stmt(self._sql["count_" + s], {"eid": experiment_id}) for s in wanted])
        return {state: int(rows[0][0]) for state, rows in zip(wanted, counts, strict=True)}

    def top(self, experiment_id: int, k: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._rows("top", {"eid": experiment_id, "limit": k})]

    def improvements(self, experiment_id: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._rows("improvements", {"eid": experiment_id})]

    def by_completion_rank(self, experiment_id: int, rank: int) -> IndividualRecord | None:
        row = self._one("by_rank", False, {"eid": experiment_id, "rank": rank})
        return None if row is None else _ind(row)

    def leased(self, experiment_id: int, limit: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._rows("leased", {"eid": experiment_id, "limit": limit})]

    def completions(self, experiment_id: int, from_rank: int, limit: int) -> list[IndividualRecord]:
        return [_ind(r) for r in self._rows("completions", {"eid": experiment_id, "rank": from_rank, "limit": limit})]

    def individuals(
        self, experiment_id: int, after_seq: int, limit: int, state: str | None = None
    ) -> list[IndividualRecord]:
        params: dict[str, Any] = {"eid": experiment_id, "after": after_seq, "limit": limit}
        if state is None:
            return [_ind(r) for r in self._rows("individuals", params)]
        return [_ind(r) for r in self._rows("individuals_in", {**params, "state": state})]

    def artifacts(self, experiment_id: int, state: str | None = "kept") -> list[IndividualRecord]:
        if state == "kept":
            return [_ind(r) for r in self._rows("artifacts_kept", {"eid": experiment_id})]
        if state is None:
            return [_ind(r) for r in self._rows("artifacts_any", {"eid": experiment_id})]
        return [_ind(r) for r in self._rows("artifacts_in", {"eid": experiment_id, "state": state})]

    # --- events ---
    def append_events(self, events: Sequence[EventRecord]) -> None:
        if not events:
            return
        params = {f"{name}_{k}": getattr(e, name) for k, e in enumerate(events) for name in _EVENT}
        # PostgreSQL: a taken sequence number fails at the next round trip, with the same ValueError.
        try:
            self._write(_Stmt(_events_sql(len(events)), params, "events"), defer=True)
        except _INTEGRITY:
            raise ValueError("event sequence number taken") from None

    def events(self, experiment_id: int, after_seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        return [EventRecord(*r) for r in self._rows("events", {"eid": experiment_id, "after": after_seq, "limit": limit})]

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
        self._write(_Stmt(self._sql["touch_worker"], params, "workers", worker_id), defer=True)

    def workers(self, experiment_id: int | None = None) -> list[WorkerRecord]:
        if experiment_id is None:
            return [WorkerRecord(*r) for r in self._rows("workers", {})]
        return [WorkerRecord(*r) for r in self._rows("workers_of", {"eid": experiment_id})]


class SqlStore:
    """A store over one engine.

    SQLite: one connection, kept open, and a lock that serializes this process's transactions (SQLite has
    one writer anyway, and threads queueing on a Python lock is far cheaper than threads spinning on
    SQLITE_BUSY); each transaction begins with ``BEGIN IMMEDIATE`` (a plain ``BEGIN`` on a read-only
    connection). PostgreSQL: a pooled connection per transaction, in the driver's autocommit mode while
    the store holds it, so that the store's own ``BEGIN`` can travel with the first statements.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._lock = nullcontext() if self._pg else threading.Lock()
        self._sqlite: Any = None  # the kept SQLite connection (a pooled connection of the engine)
        self._sqlite_begin = "BEGIN IMMEDIATE"
        self._ids: deque[int] = deque()
        self._ids_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # --- proposal ids (PostgreSQL) ---
    def _ids_low(self) -> bool:
        return len(self._ids) < ID_LOW

    def _add_ids(self, ids: Iterable[int]) -> None:
        with self._ids_lock:
            self._ids.extend(ids)

    def _take_id(self) -> int | None:
        with self._ids_lock:
            return self._ids.popleft() if self._ids else None

    # --- connections ---
    def _checkout(self) -> Any:
        try:
            fairy = self.engine.raw_connection()
        except DBAPIError as exc:
            raise StoreUnavailable(f"database unavailable: {_first_line(exc.orig)}") from exc
        if self._pg:
            raw: Any = fairy.driver_connection
            try:
                if raw.info.transaction_status != 0:  # an engine that pre-pings leaves a transaction open
                    raw.rollback()
            except _PG_ERROR:
                fairy.invalidate()
                raise
        return fairy

    @staticmethod
    def _discard(fairy: Any) -> None:
        """Drop a dead connection from the pool."""
        try:
            fairy.invalidate()
            fairy.close()
        except Exception:  # it is being thrown away
            pass

    def _give_back(self, tx: SqlTx) -> None:
        fairy = tx._fairy
        if fairy is None:
            return
        raw = fairy.driver_connection
        try:
            if raw is None or raw.broken or raw.closed or raw.info.transaction_status != 0:
                fairy.invalidate()  # a connection left in a transaction (a failed rollback) is not reused
        except _PG_ERROR:
            fairy.invalidate()
        fairy.close()

    def _sqlite_connection(self) -> Any:
        if self._sqlite is None:
            fairy = self._checkout()
            cur = fairy.driver_connection.cursor()
            # A connection that may not write (db.readmodel's) takes a deferred BEGIN: one snapshot per transaction.
            readonly = bool(cur.execute("PRAGMA query_only").fetchone()[0])
            cur.close()
            self._sqlite_begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"
            self._sqlite = fairy
        return self._sqlite

    def _drop_sqlite(self) -> None:
        fairy, self._sqlite = self._sqlite, None
        if fairy is not None:
            self._discard(fairy)

    # --- transactions ---
    @contextmanager
    def transaction(self) -> Iterator[SqlTx]:
        with self._lock:
            try:
                if self._pg:
                    tx = SqlTx(self, self._checkout(), True)
                else:
                    fairy = self._sqlite_connection()
                    tx = SqlTx(self, fairy, False)
                    try:
                        tx._cur.execute(self._sqlite_begin)
                    except sqlite3.Error:
                        self._drop_sqlite()
                        raise
            except _UNAVAILABLE as exc:
                raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
            try:
                yield tx
                tx.commit()
            except BaseException as exc:
                self._abort(tx)
                if not self._pg and isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                    self._drop_sqlite()  # locked, I/O, not a database: start afresh next time
                if isinstance(exc, _UNAVAILABLE) or (self._pg and isinstance(exc, _PG_ERROR) and tx._broken()):
                    raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
                raise
            finally:
                if self._pg:
                    self._give_back(tx)

    def _abort(self, tx: SqlTx) -> None:
        try:
            tx.rollback()
        except _DB_ERROR:
            if not self._pg:
                self._drop_sqlite()
            elif tx._fairy is not None:
                fairy, tx._fairy = tx._fairy, None
                self._discard(fairy)

    def close(self) -> None:
        with self._lock:
            fairy, self._sqlite = self._sqlite, None
            if fairy is not None:
                fairy.close()
        self.engine.dispose()
