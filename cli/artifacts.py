"""``amoeba artifacts``: the trained weights an experiment kept (where, sha256, size, kept or deleted), read-only."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("artifacts")(artifacts)


def open_artifacts(url: str | None) -> Any:
    """The ArtifactStore at ``url`` (None: no store), or one user-facing line."""
    if url is None:
        return None
    from artifacts.store import ArtifactError, ArtifactStore

    try:
        return ArtifactStore(url)
    except ArtifactError as exc:
        raise UserError(str(exc)) from None


def default_store(db_url: str) -> str:
    """``amoeba up``'s store: ``amoeba-artifacts/`` beside a SQLite file, else in the current folder."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from db.engine import normalize_url

    try:
        url = make_url(normalize_url(db_url))
    except Exception:
        return "amoeba-artifacts"
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return str(Path(url.database).resolve().parent / "amoeba-artifacts")
    return str(Path("amoeba-artifacts").resolve())


def artifacts(
    db_url: Annotated[str, typer.Option("--db", help="database URL or SQLite file, opened read-only")],
    experiment: Annotated[str | None, typer.Option(help="experiment name (default: the newest running one)")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="read every kept artifact and check its size and sha256")] = False,
    as_json: Annotated[bool, typer.Option("--json", help='a JSON list of {"seq", "uri", "sha256", "bytes", "state"}')] = False,
) -> None:
    """List an experiment's artifacts: each trained child's weights in the store and whether retention kept them."""
    from cli.status import open_readmodel

    with open_readmodel(db_url) as model:
        rows = model.artifacts(experiment)
    if verify:
        from artifacts.store import ArtifactError, read_artifact
        from domain import Artifact

        for row in rows:
            if row["state"] != "kept":
                continue
            try:
                read_artifact(Artifact(row["uri"], row["sha256"], int(row["bytes"] or 0)))
                row["verified"] = True
            except ArtifactError as exc:
                row["verified"], row["error"] = False, str(exc)
    if as_json:
        keys = ("seq", "uri", "sha256", "bytes", "state", *(("verified", "error") if verify else ()))
        print(json.dumps([{k: r.get(k) for k in keys if k in r or k != "error"} for r in rows], indent=2))
    else:
        _table(rows, verify)
    if verify and any(r.get("verified") is False for r in rows):
        bad = [r for r in rows if r.get("verified") is False]
        raise UserError(f"{len(bad)} kept artifact(s) missing or damaged, e.g. {bad[0]['error']}")


def _table(rows: list[dict[str, Any]], verify: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("no artifacts (start the server with --artifacts URL; `amoeba up` keeps them by default)")
        return
    kept = [r for r in rows if r["state"] == "kept"]
    table = Table(title=f"{len(kept)} kept of {len(rows)} stored, {sum(int(r['bytes'] or 0) for r in kept):,} bytes kept")
    for column in ("seq", "state", "accuracy", "bytes", "sha256", "uri", *(("check",) if verify else ())):
        table.add_column(column, justify="right" if column in ("seq", "bytes", "accuracy") else "left")
    for r in rows:
        check = ("ok" if r.get("verified") else "BAD" if r.get("verified") is False else "-") if verify else None
        table.add_row(str(r["seq"]), str(r["state"]), "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}",
                      f"{int(r['bytes'] or 0):,}", str(r["sha256"])[:12], str(r["uri"]), *((check,) if check else ()))
    console.print(table)
