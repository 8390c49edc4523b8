"""Engines for database URLs: SQLite with WAL, busy timeout and foreign keys; PostgreSQL via psycopg 3."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

#: Seconds a SQLite connection waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0


def normalize_url(url: str) -> str:
    """Accept a bare file path (SQLite) and ``postgresql://`` (driven by psycopg 3)."""
    url = url.strip()
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def dialect_of(url: str) -> str:
    return make_url(normalize_url(url)).get_backend_name()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the connection settings the store relies on (see module docstring)."""
    url = normalize_url(url)
    backend = dialect_of(url)
    if backend == "sqlite":
        memory = make_url(url).database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            **({"poolclass": StaticPool} if memory else {}),
            **kwargs,
        )
        _configure_sqlite(engine, memory)
        return engine
    if backend == "postgresql":
        # No pre-ping (a round trip per checkout): db.sql replaces a connection that its first round trip
        # finds dead, and a query of anyone else on a dead one fails once and drops it from the pool.
        kwargs.setdefault("pool_pre_ping", False)
        kwargs.setdefault("pool_size", 8)
        kwargs.setdefault("max_overflow", 16)
        return create_engine(url, **kwargs)
    raise ValueError(f"unsupported database {backend!r}; use sqlite:///FILE or postgresql+psycopg://...")


def _configure_sqlite(engine: Engine, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN IMMEDIATE (below) is what starts one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last commits.
            cur.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint less often: pages rewritten by many commits (counters, index roots) are copied once.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can then never fail
        # with SQLITE_BUSY half-way (a deferred one cannot upgrade while another process writes).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
