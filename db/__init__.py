"""The SQL population store: SQLAlchemy rows, repositories and Alembic migrations."""

from __future__ import annotations

from db.repository import (
    DuplicateName,
    EventRecord,
    ExperimentRecord,
    IndividualRecord,
    NewIndividual,
    SchemaOutOfDate,
    Store,
    StoreError,
    StoreTx,
    StoreUnavailable,
    WorkerRecord,
)

MEMORY_URL = "memory://"


def open_store(url: str, *, check: bool = True) -> Store:
    """A store for ``url``: ``memory://`` (in-process fake), a SQLite file URL or path, or PostgreSQL.

    With ``check`` (the default) a SQL database must be at the migration head, else SchemaOutOfDate
    (whose message names ``amoeba migrate``).
    """
    if url == MEMORY_URL:
        from db.memory import MemoryStore

        return MemoryStore()
    from db.engine import make_engine
    from db.schema import check_schema
    from db.sql import SqlStore

    engine = make_engine(url)
    if check:
        try:
            check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
    return SqlStore(engine)


def check_schema(url: str) -> str:
    """Raise SchemaOutOfDate (naming ``amoeba migrate``) unless ``url`` is at head; return the revision."""
    from db.schema import check_schema as _check

    return _check(url)


def upgrade(url: str) -> str:
    """Upgrade ``url`` to the migration head (idempotent); return the revision."""
    from db.schema import upgrade as _upgrade

    return _upgrade(url)


__all__ = [
    "MEMORY_URL",
    "DuplicateName",
    "EventRecord",
    "ExperimentRecord",
    "IndividualRecord",
    "NewIndividual",
    "SchemaOutOfDate",
    "Store",
    "StoreError",
    "StoreTx",
    "StoreUnavailable",
    "WorkerRecord",
    "check_schema",
    "open_store",
    "upgrade",
]
