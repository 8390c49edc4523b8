"""Read-only access to a store database: a Store that cannot write, and the few queries beyond StoreTx
that the status view, time travel and exports need (all bounded by an index range)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from db.engine import SQLITE_BUSY_TIMEOUT_S, normalize_url
from db.models import EventRow, IndividualRow
from db.repository import EventRecord, StoreUnavailable
from db.schema import check_schema
from db.sql import SqlStore

I = IndividualRow.__table__  # noqa: E741 - as in db.sql
V = EventRow.__table__


@dataclass(frozen=True, slots=True)
class FrontPoint:
    """A completed individual with both objectives: what the accuracy/latency front is made of."""

    proposal_seq: int
    fingerprint: str
    accuracy: float
    latency_ms: float


def _sqlite_read_mode(path: Path) -> str:
    """``immutable=1`` when nothing can be changing the file: no write-ahead log beside it (a live writer
    keeps one) or read-only media. Such a file is read without creating ``-wal``/``-shm`` files, which
    ``mode=ro`` would leave beside a copied database (and cannot create on read-only media). With a
    ``-wal`` file a writer may be live: ``mode=ro`` then reads its committed changes too."""
    wal = path.with_name(path.name + "-wal")
    writable = os.access(path.parent, os.W_OK)
    return "immutable=1" if not wal.exists() or not writable else "mode=ro"


def readonly_engine(url: str, *, follow: bool = False) -> Engine:
    """An engine that can only read: SQLite opened with ``mode=ro``, PostgreSQL in read-only transactions.

    A SQLite path must name an existing file (read-only mode never creates one). ``follow`` (a watch that
    re-reads for a long time) always opens SQLite in ``mode=ro``, which sees later writes.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("a read-only SQLite database must be a file")
        path = Path(parsed.database).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no database file {path}")
        engine = create_engine(
            f"sqlite:///file:{path.as_posix()}?{'mode=ro' if follow else _sqlite_read_mode(path)}&uri=true",
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we say BEGIN ourselves (below), the driver stays out of it
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA query_only=1")  # belt and braces: refuse writes even through a writable handle
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A deferred read transaction: every query of one status document sees the same snapshot.
            conn.exec_driver_sql("BEGIN")

        return engine
    if backend == "postgresql":
        # Every transaction of every pooled connection is READ ONLY: a stray write fails instead of landing.
        return create_engine(url, pool_pre_ping=True, pool_size=2,
                             connect_args={"options": "-c default_transaction_read_only=on"})
    raise ValueError(f"unsupported database {backend!r}; use sqlite:///FILE or postgresql://...")


class ReadOnlyDatabase:
    """A store database opened for reading only: ``store`` (the StoreTx contract) plus extra queries."""

    def __init__(self, url: str, *, check: bool = True, follow: bool = False) -> None:
        self.url = url
        self.engine = readonly_engine(url, follow=follow)
        try:
            if check:
                # Messages name the user's URL, not the read-only one the engine was opened with.
                check_schema(self.engine, display_url=url)
            self.store = SqlStore(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {' '.join(str(exc.orig).split())}") from None

    def front_points(self, experiment_id: int, since_rank: int = 0) -> list[FrontPoint]:
        """The non-dominated individuals (accuracy up, latency down) among those completed at rank
        ``since_rank`` or later, by latency.

        The database walks those rows by latency and keeps each one more accurate than every faster
        one (a window maximum), so only the front crosses the wire. Of points with equal accuracy and
        latency, one is kept. The cost grows with the number of rows walked (about 0.5 s per 100,000
        on a busy 2-core machine): callers bound it with ``since_rank``.
        """
        faster_best = func.max(I.c.accuracy).over(order_by=(I.c.latency_ms, I.c.accuracy.desc(), I.c.proposal_seq),
                                                  rows=(None, -1))
        # Completed rows are exactly those with a completion rank: the range walks the partial rank index.
        rows = (
            select(I.c.proposal_seq, I.c.fingerprint, I.c.accuracy, I.c.latency_ms, faster_best.label("faster_best"))
            .where(I.c.experiment_id == experiment_id, I.c.completion_rank >= since_rank,
                   I.c.latency_ms.is_not(None), I.c.accuracy.is_not(None))
            .subquery()
        )
        stmt = (
            select(rows.c.proposal_seq, rows.c.fingerprint, rows.c.accuracy, rows.c.latency_ms)
            .where(or_(rows.c.faster_best.is_(None), rows.c.accuracy > rows.c.faster_best))
            .order_by(rows.c.latency_ms)
        )
        with self.connection() as conn:
            return [FrontPoint(int(s), f, float(a), float(lat)) for s, f, a, lat in conn.execute(stmt)]

    def events_upto(self, experiment_id: int, last_seq: int) -> list[EventRecord]:
        """The event log from the start up to and including ``last_seq``."""
        stmt = (
            select(V.c.experiment_id, V.c.seq, V.c.kind, V.c.at, V.c.individual_id, V.c.proposal_seq, V.c.data_json)
            .where(V.c.experiment_id == experiment_id, V.c.seq <= last_seq)
            .order_by(V.c.seq)
        )
        with self.connection() as conn:
            return [EventRecord(*r) for r in conn.execute(stmt)]

    def genomes(self, experiment_id: int, proposal_seqs: Iterable[int]) -> dict[int, tuple[str, int | None, str]]:
        """proposal seq -> (genome JSON, parent seq, fingerprint) for the asked proposals."""
        wanted = sorted(set(proposal_seqs))
        out: dict[int, tuple[str, int | None, str]] = {}
        with self.connection() as conn:
            for i in range(0, len(wanted), 500):
                stmt = select(I.c.proposal_seq, I.c.genome_json, I.c.parent_seq, I.c.fingerprint).where(
                    I.c.experiment_id == experiment_id, I.c.proposal_seq.in_(wanted[i:i + 500]))
                out.update({int(s): (g, p, f) for s, g, p, f in conn.execute(stmt)})
        return out

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()
