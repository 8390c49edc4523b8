"""``amoeba migrate``: upgrade a database to the current schema (Alembic), idempotently."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.errors import UserError

DEFAULT_DB = "sqlite:///amoeba.db"


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)


def migrate(
    db_url: Annotated[str, typer.Option("--db", help="database URL: sqlite:///FILE (or a path) or postgresql://...")] = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
) -> None:
    """Upgrade the database to the schema this version needs (safe to run again; prints the revision)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from db import StoreError
    from db.engine import normalize_url
    from db.schema import current_revision, head_revision, upgrade

    try:
        shown = make_url(normalize_url(db_url)).render_as_string(hide_password=True)
        before = current_revision(db_url)
        after = upgrade(db_url)
    except (ArgumentError, ValueError) as exc:
        raise UserError(f"bad database URL {db_url!r}: {exc}") from None
    except StoreError as exc:
        raise UserError(f"cannot migrate {db_url}: {exc}") from None
    doc = {"database": shown, "previous": before, "revision": after, "head": head_revision(), "changed": before != after}
    if as_json:
        print(json.dumps(doc, sort_keys=True))
    elif before == after:
        print(f"{shown}: already at revision {after} (head)")
    else:
        print(f"{shown}: upgraded from {before or 'an empty database'} to revision {after} (head)")
