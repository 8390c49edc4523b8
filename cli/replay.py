"""``amoeba replay``: verify, time-travel and export an experiment from its database alone (read-only).

``--json`` documents (stable):
- ``--verify``: ``{"experiment", "ok", "events", "proposals", "completed", "failed", "problems": [str]}``
  (``problems[0]`` is the first mismatch); exit status 1 when ``ok`` is false.
- ``--at SEQ``: the status document of ``ui/schema.py`` as of event SEQ (``seq`` = SEQ).
- ``--export DIR``: ``{"experiment", "directory", "individuals", "files": {artifact: path}}``.
Several actions in one call print one object ``{"verify": ..., "at": ..., "export": ...}`` with the ones asked for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import UserError
from cli.status import domain_call, open_readmodel


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    db_url: Annotated[str, typer.Option("--db", help="database URL or SQLite file (a copy works; opened read-only)")],
    experiment: Annotated[str | None, typer.Option(help="experiment name (default: the newest running one)")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="re-derive every proposal from the seed and the event log")] = False,
    at: Annotated[int | None, typer.Option("--at", help="show the status as of event number SEQ (time travel)")] = None,
    export: Annotated[str | None, typer.Option("--export", help="write history, lineage, population timeline (CSV, JSON) and PNG plots to DIR")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="with --export: replace another experiment's results in DIR")] = False,
    top: Annotated[int, typer.Option(help="with --at: how many of the best individuals to list")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (see the module's schema)")] = False,
) -> None:
    """Replay an experiment from its database: --verify, --at SEQ, --export DIR (any combination)."""
    if not (verify or at is not None or export):
        raise UserError("say what to do: --verify, --at SEQ and/or --export DIR")
    model = open_readmodel(db_url)
    out: dict[str, Any] = {}
    ok = True
    try:
        exp = domain_call(lambda: model.experiment(experiment))
        if verify:
            report = domain_call(lambda: model.verify(exp.name))
            out["verify"] = report.to_json()
            ok = report.ok
            if not as_json:
                if report.ok:
                    print(f"{exp.name}: verified {report.proposals} proposals, {report.completed} completions and "
                          f"{report.failed} failures from seed {model.spec(exp).seed} and {report.events} events: all match")
                else:
                    print(f"{exp.name}: replay mismatch: {report.problems[0]}"
                          + (f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""))
        if at is not None:
            doc = domain_call(lambda: model.status_at(at, exp.name, top))
            out["at"] = doc
            if not as_json:
                from rich.console import Console

                from ui.status import render_status

                Console().print(render_status(doc))
        if export:
            out["export"] = _export(model, exp, Path(export), db_url, quiet=as_json, overwrite=overwrite)
    finally:
        model.close()
    if as_json:
        print(json.dumps(next(iter(out.values())) if len(out) == 1 else out, sort_keys=True))
    if not ok:
        sys.exit(1)


def _export(model: Any, exp: Any, directory: Path, db_url: str, quiet: bool, overwrite: bool = False) -> dict[str, Any]:
    from cli.up import shown_database
    from ui.export import claim_folder, export_experiment

    if directory.exists() and not directory.is_dir():
        raise UserError(f"--export {directory} exists and is not a folder")
    claim_folder(directory, {"database": shown_database(db_url), "experiment": exp.name},
                 overwrite)
    spec = model.spec(exp)
    records = domain_call(lambda: model.records(exp.name))
    from cli.lineage import departures
    from ui.derive import KILLING_ALGORITHMS

    # Members of a killing algorithm leave at proposals: their times come from the log's killed events.
    gone = departures(model.db.store, exp.name) if spec.algorithm in KILLING_ALGORITHMS else None
    try:
        files = export_experiment(records, directory, population_size=spec.population_size, algorithm=spec.algorithm,
                                  created_at=exp.created_at, name=exp.name, curves=model.curves(exp.name),
                                  departures=gone)
    except OSError as exc:
        raise UserError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    if not quiet:
        print(f"{exp.name}: exported {len(records)} individuals to {directory}/ "
              f"({', '.join(sorted(Path(p).name for p in files.values()))})")
    return {"experiment": exp.name, "directory": str(directory), "individuals": len(records), "files": files}
