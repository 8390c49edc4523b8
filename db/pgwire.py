"""PostgreSQL round trips at libpq's level: several statements sent back to back, one Sync, one wait.

psycopg's cursors cost tens of microseconds of Python per statement, and its pipeline mode adds a poll and
a send per statement; the store's hot path runs a handful of short statements per use case, so here they
go through the connection's libpq handle directly (psycopg's ``pq`` layer), with psycopg's own adapters
dumping the parameters and loading the rows exactly as a cursor would. Every statement is prepared once
per connection (by its text and parameter types) and then executed by name.

The psycopg connection stays the owner: this module only talks on it while the store holds it, leaves it
idle (no transaction, pipeline mode off) after every round trip that ends one, and raises psycopg's own
exceptions (``psycopg.errors``), so callers map errors as they would for a cursor.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

_TEXT = pq.Format.TEXT
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_FATAL = pq.ExecStatus.FATAL_ERROR
_ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY)
_BAD = pq.ConnStatus.BAD
#: Prepared statements kept per connection; past this, statements run unnamed (parsed each time).
MAX_PREPARED = 512
#: Seconds one wait for the socket may block before it is checked again (a wait never gives up by itself).
_POLL_S = 1.0


class Answer:
    """One statement's answer: its rows (tuples, loaded by psycopg's adapters) and its row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount


class Wire:
    """Round trips on one psycopg connection (kept in the pooled connection's ``info``: one per connection)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self._tx = Transformer(conn)
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}

    @property
    def broken(self) -> bool:
        return self.conn.closed or self.pgconn.status == _BAD

    def trip(self, statements: Sequence[tuple[bytes, Sequence[Any] | None]]) -> list[Answer]:
        """Send ``statements`` (SQL with ``$n`` placeholders, parameters) in one round trip and return each
        one's answer. The first error raises (psycopg's exception for it); the statements after it did not
        run, and an explicit transaction is then aborted (the caller rolls it back)."""
        pg = self.pgconn
        tx = self._tx
        fresh: list[tuple[bytes, tuple[int, ...]]] = []  # prepared in this trip: kept only if the prepare succeeded
        expect: list[bool] = []  # per result: True for a statement's answer, False for a prepare's
        pg.enter_pipeline_mode()
        try:
            for query, params in statements:
                if params:
                    values = tx.dump_sequence(params, [PyFormat.AUTO] * len(params))
                    types, formats = tuple(tx.types or ()), list(tx.formats or ())
                else:
                    values, types, formats = None, (), None
                key = (query, types)
                name = self._prepared.get(key)
                if name is None and len(self._prepared) < MAX_PREPARED:
                    name = b"amoeba_%d" % len(self._prepared)
                    pg.send_prepare(name, query, param_types=types or None)
                    self._prepared[key] = name
                    fresh.append(key)
                    expect.append(False)
                if name is None:
                    pg.send_query_params(query, values, param_types=types or None, param_formats=formats,
                                         result_format=_TEXT)
                else:
                    pg.send_query_prepared(name, values, param_formats=formats, result_format=_TEXT)
                expect.append(True)
            pg.pipeline_sync()
            results = self._exchange(len(expect))
        except BaseException:
            for key in fresh:
                self._prepared.pop(key, None)
            self._leave()
            raise
        self._leave()
        answers: list[Answer] = []
        error: BaseException | None = None
        prepares = iter(fresh)
        for is_answer, res in zip(expect, results, strict=True):
            status = res.status
            if not is_answer:
                key = next(prepares)
                if status not in _OK:
                    self._prepared.pop(key, None)  # not prepared after all: prepared afresh next time
                    if error is None and status == _FATAL:
                        error = errors.error_from_result(res, encoding=self.conn.info.encoding)
                continue
            if status == _FATAL:
                if error is None:
                    error = errors.error_from_result(res, encoding=self.conn.info.encoding)
                continue
            if status not in _OK:
                continue  # aborted by an earlier error
            tx.set_pgresult(res)
            rows = tx.load_rows(0, res.ntuples, tuple) if res.ntuples else []
            count = res.command_tuples
            answers.append(Answer(rows, int(count) if count is not None else -1))
        if error is not None:
            raise error
        return answers

    def _exchange(self, n: int) -> list[Any]:
        """Flush what was sent and read ``n`` results and the Sync that ends them."""
        pg = self.pgconn
        fd = pg.socket
        results: list[Any] = []
        current: Any = None
        flushing = pg.flush() != 0
        while True:
            nulls = 0
            while not pg.is_busy():
                res = pg.get_result()
                if res is None:  # the end of one statement's results
                    if current is not None:
                        results.append(current)
                        current = None
                    nulls += 1
                    if nulls > 1:
                        break
                    continue
                nulls = 0
                if res.status == _SYNC:
                    if current is not None or len(results) != n:
                        raise psycopg.OperationalError(f"expected {n} results before the sync, got {len(results)}")
                    return results
                current = res
            if pg.status == _BAD:
                raise psycopg.OperationalError(f"the connection is lost: {pg.get_error_message()}")
            readable, _, _ = select.select([fd], [fd] if flushing else [], [], _POLL_S)
            if flushing:
                flushing = pg.flush() != 0
            if readable:
                pg.consume_input()

    def _leave(self) -> None:
        if self.pgconn.status != _BAD and self.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            with contextlib.suppress(psycopg.Error):
                self.pgconn.exit_pipeline_mode()


def wire_for(fairy: Any) -> Wire:
    """The Wire of a pooled connection (made on first use; a replaced connection gets a new one)."""
    wire: Wire | None = fairy.info.get("amoeba_wire")
    if wire is None or wire.conn is not fairy.driver_connection:
        wire = fairy.info["amoeba_wire"] = Wire(fairy.driver_connection)
    return wire
