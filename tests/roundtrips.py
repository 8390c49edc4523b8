"""Counting what a store sends its database: round trips on PostgreSQL, statements on SQLite.

PostgreSQL: libpq's protocol trace of every connection the store opens, and one round trip counted each time
the client, having sent something, reads the server's answer (a pipeline of several statements and a Sync
is one). SQLite runs in-process, so what is counted there is statements executed (``BEGIN`` and ``COMMIT``
included). Used by ``tests/test_store_roundtrips.py`` and ``benchmarks/service_inprocess.py``; meant for one
thread at a time (the counts of concurrent transactions would interleave).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event


@dataclass
class Count:
    """What was counted (``value``, read once the ``counting`` block has ended); ``kind`` is ``round trips`` or
    ``statements``."""

    kind: str
    _statements: int = 0
    _traces: list[Path] = field(default_factory=list)
    _conns: list[Any] = field(default_factory=list)
    _final: int | None = None

    @property
    def value(self) -> int:
        if self._final is None:
            raise RuntimeError("the count is known once the counting block has ended")
        return self._final

    def _finish(self) -> None:
        if self.kind == "statements":
            self._final = self._statements
            return
        for conn in self._conns:  # flushes libpq's buffered trace
            with contextlib.suppress(Exception):
                conn.pgconn.untrace()
        self._conns.clear()
        self._final = sum(_round_trips(p.read_text(errors="replace")) for p in self._traces)


def _round_trips(trace: str) -> int:
    """Client-to-server message runs followed by a server answer, in libpq's trace format."""
    trips, sent = 0, False
    for line in trace.splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        direction = parts[0] if parts[0] in ("F", "B") else parts[1]
        if direction == "F":
            sent = True
        elif direction == "B" and sent:
            trips += 1
            sent = False
    return trips


@contextlib.contextmanager
def counting(store: Any) -> Iterator[Count]:
    """Count from now on what ``store`` (a ``db.sql.SqlStore``) sends. The store's open connections are closed
    first, so that every connection it uses meanwhile is one opened (and traced) here."""
    from psycopg import pq

    engine = store.engine
    postgres = engine.dialect.name == "postgresql"
    count = Count("round trips" if postgres else "statements")
    folder = Path(tempfile.mkdtemp(prefix="amoeba-trace-"))
    files: list[Any] = []

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if postgres:
            path = folder / f"{len(count._traces)}.trace"
            handle = path.open("w")
            files.append(handle)
            count._traces.append(path)
            count._conns.append(dbapi_conn)
            dbapi_conn.pgconn.trace(handle.fileno())
            dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        else:
            def bump(sql: str) -> None:
                if not sql.startswith("PRAGMA"):  # the connection's own set-up, not the calls'
                    count._statements += 1

            dbapi_conn.set_trace_callback(bump)

    store.close()
    event.listen(engine, "connect", on_connect)
    try:
        yield count
    finally:
        event.remove(engine, "connect", on_connect)
        count._finish()
        store.close()
        for handle in files:
            with contextlib.suppress(OSError):
                handle.close()
        for p in folder.iterdir():
            with contextlib.suppress(OSError):
                os.unlink(p)
        with contextlib.suppress(OSError):
            folder.rmdir()
