"""Alembic, configured in code: upgrade a database to head and check that it is there before serving."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError, OperationalError

from db.engine import make_engine, normalize_url
from db.repository import SchemaOutOfDate, StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")


def _one_line(exc: BaseException | None) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def alembic_config(url: str) -> Config:
    """An Alembic config without an ini file; ``url`` is passed through attributes (no %-escaping)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = normalize_url(url)
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def not_a_database(exc: DatabaseError) -> StoreError:
    """The error for a file that SQLite cannot read as a database (a text file, random bytes, ...)."""
    return StoreError(f"not an Amoeba database ({_one_line(exc.orig)})")


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise StoreUnavailable(f"cannot open database: {_one_line(exc.orig)}") from None
    except DatabaseError as exc:
        raise not_a_database(exc) from None
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def upgrade(url: str) -> str:
    """Upgrade the database to head (idempotent); return the revision it is at. A database a newer Amoeba
    migrated further is refused (SchemaOutOfDate) and left as it is."""
    current = current_revision(url)
    if current is not None and not is_known(current):
        raise SchemaOutOfDate(f"database is at schema revision {current}, newer than this version of Amoeba knows "
                              f"(it ends at {head_revision()}): upgrade Amoeba to open it")
    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as exc:
        raise StoreUnavailable(f"cannot migrate database: {_one_line(exc.orig)}") from None
    except DatabaseError as exc:
        raise not_a_database(exc) from None
    revision = current_revision(url)
    assert revision is not None
    return revision


def check_schema(url_or_engine: str | Engine, display_url: str | None = None) -> str:
    """Return the head revision, or raise SchemaOutOfDate naming ``amoeba migrate`` when not at head.

    ``display_url`` is the URL the user gave, for messages (an engine may be opened with another one).
    """
    current = current_revision(url_or_engine)
    head = head_revision()
    if current != head:
        url = display_url or (url_or_engine if isinstance(url_or_engine, str)
                              else url_or_engine.url.render_as_string(hide_password=True))
        if current is not None and not is_known(current):
            raise SchemaOutOfDate(f"database {url} is at schema revision {current}, newer than this version of Amoeba "
                                  f"knows (it ends at {head}): upgrade Amoeba to open it")
        at = "empty (no schema)" if current is None else f"at revision {current}"
        raise SchemaOutOfDate(f"database {at}, this version needs {head}: run `amoeba migrate --db {url}` first")
    return head


def is_known(revision: str) -> bool:
    """Whether this version's migrations know ``revision`` (a newer Amoeba may have written a later one)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return any(r.revision == revision for r in script.walk_revisions())
