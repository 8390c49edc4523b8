"""CSV and JSON exports of an experiment from plain records: history, lineage of the best, population timeline.

Records are mappings with the ``orchestrator.domain.Individual`` field names (``dataclasses.asdict``
of one works as is). The column lists below are the stable export schema; keys outside them are
ignored, missing ones are written empty (CSV) or null (JSON). ``genome`` is canonical JSON text in
CSV and an object in JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from domain.errors import AmoebaError
from ui.derive import lineage, population_timeline
from ui.files import atomic_write

#: The file in an export folder that says whose results it holds.
SOURCE_FILE = ".amoeba-source.json"


class ExportConflict(AmoebaError):
    """The export folder holds the results of another experiment or database."""


def claim_folder(out_dir: str | Path, source: Mapping[str, Any], overwrite: bool = False) -> None:
    """Make ``out_dir`` the results folder of ``source`` (database, experiment, created_at): refuse, unless
    ``overwrite``, a folder that holds another source's results; an empty or own folder is fine."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise ExportConflict(f"{d} exists and is not a folder")
    marker = d / SOURCE_FILE
    wanted = dict(source)
    if marker.is_file() and not overwrite:
        try:
            held = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            held = None
        if held != wanted:
            what = (f"experiment {held.get('experiment')!r} of {held.get('database')}" if isinstance(held, dict)
                    else "another experiment")
            raise ExportConflict(f"{d} holds the results of {what}; pass another folder, or --overwrite to "
                                 "replace them")
    elif not marker.exists() and d.is_dir() and any(d.iterdir()) and not overwrite:
        raise ExportConflict(f"{d} is not empty and holds no Amoeba results; pass another folder, or --overwrite")
    d.mkdir(parents=True, exist_ok=True)
    with atomic_write(marker) as fh:
        fh.write(json.dumps(wanted, sort_keys=True, indent=2) + "\n")


HISTORY_COLUMNS: tuple[str, ...] = (
    "proposal_seq", "fingerprint", "parent_seq", "mutation", "state", "attempts", "fitness", "accuracy",
    "latency_ms", "params", "mult_adds", "train_seconds", "compile_seconds", "created_at", "completed_at",
    "completion_rank", "failure_reason", "inherited_params", "initial_accuracy", "artifact_uri", "genome",
)
LINEAGE_COLUMNS: tuple[str, ...] = ("generation", *HISTORY_COLUMNS)
CURVE_COLUMNS: tuple[str, ...] = ("proposal_seq", "attempt", "epoch", "accuracy", "train_loss", "seconds")
TIMELINE_COLUMNS: tuple[str, ...] = (
    "completion_rank", "proposal_seq", "completed_at", "fitness", "size", "best", "median", "worst",
    "best_proposal_seq",
)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; an export must parse everywhere
    return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Mapping | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def write_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], csv_path: str | Path,
                json_path: str | Path | None = None) -> list[Path]:
    """Write rows as CSV (header = ``columns``) and, when asked, as a JSON list of objects with those keys."""
    materialised = [{c: r.get(c) for c in columns} for r in rows]
    written = []
    out = Path(csv_path)
    with atomic_write(out) as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in materialised:
            writer.writerow([_csv_value(r[c]) for c in columns])
    written.append(out)
    if json_path is not None:
        jout = Path(json_path)
        # One object per line: readable, diffable, and the C encoder (indent= would fall back to pure Python).
        lines = (json.dumps({c: _json_value(r[c]) for c in columns}) for r in materialised)
        with atomic_write(jout) as jfh:
            jfh.write("[\n" + ",\n".join(lines) + "\n]\n")
        written.append(jout)
    return written


def write_history(records: Iterable[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """history.csv and history.json: every individual in proposal order."""
    rows = sorted(({**r, "artifact_uri": (r.get("artifact") or {}).get("uri")} for r in records),
                  key=lambda r: int(r["proposal_seq"]))
    d = Path(out_dir)
    return write_table(rows, HISTORY_COLUMNS, d / "history.csv", d / "history.json")


def best_record(records: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The completed record with the highest fitness (earliest proposal on ties); None when there is none."""
    done = [r for r in records if r.get("state", "completed") == "completed" and r.get("fitness") is not None]
    if not done:
        return None
    return max(done, key=lambda r: (float(r["fitness"]), -int(r["proposal_seq"])))


def write_lineage(records: Sequence[Mapping[str, Any]], proposal_seq: int, out_dir: str | Path) -> list[Path]:
    """lineage.csv and lineage.json: the individual, its parent, ... back to a random genome (generation 0)."""
    chain = lineage(records, proposal_seq)
    rows = [{"generation": len(chain) - 1 - i, **r} for i, r in enumerate(chain)]
    d = Path(out_dir)
    return write_table(rows, LINEAGE_COLUMNS, d / "lineage.csv", d / "lineage.json")


def write_population_timeline(records: Iterable[Mapping[str, Any]], population_size: int, out_dir: str | Path,
                              algorithm: str = "aging", departures: Mapping[int, int] | None = None) -> list[Path]:
    """population.csv and population.json: size, best, median and worst fitness after every completion
    (``departures``: when a killing algorithm's members left, see ``ui.derive.population_timeline``)."""
    d = Path(out_dir)
    rows = population_timeline(records, population_size, algorithm, departures)
    return write_table(rows, TIMELINE_COLUMNS, d / "population.csv", d / "population.json")


def export_experiment(
    records: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    population_size: int,
    algorithm: str = "aging",
    created_at: float | None = None,
    name: str = "",
    curves: Sequence[Mapping[str, Any]] = (),
    departures: Mapping[int, int] | None = None,
) -> dict[str, str]:
    """Everything ``amoeba replay --export`` writes, in one folder; returns {artifact: path}.

    Artifacts: history, lineage (of the best, when there is one), population (CSV + JSON each),
    progress.png (fitness against time since ``created_at`` when given, else the completion index),
    front.png (accuracy against latency), ancestry.png (every individual's accuracy over wall time, the
    best one's ancestry as a line: Large-Scale Evolution's figure), and with ``curves`` (progress reports) curves.csv and
    learning_curves.png (every child a thin line, the best ones in colour).
    """
    from ui.plots import front_plot, learning_curves_plot, progress_plot  # matplotlib costs a second; only here

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for p in write_history(records, d):
        out[p.stem + p.suffix.replace(".", "_")] = str(p)
    best = best_record(records)
    if best is not None:
        for p in write_lineage(records, int(best["proposal_seq"]), d):
            out[p.stem + p.suffix.replace(".", "_")] = str(p)
    for p in write_population_timeline(records, population_size, d, algorithm, departures):
        out[p.stem + p.suffix.replace(".", "_")] = str(p)
    done = [r for r in records if r.get("state", "completed") == "completed" and r.get("fitness") is not None]
    if created_at is not None and all(r.get("completed_at") is not None for r in done):
        span = max((float(r["completed_at"]) - created_at for r in done), default=0.0)
        # The unit follows the run: a two-second table run in hours would read 0.0006.
        unit, scale = ("seconds", 1.0) if span < 120 else ("minutes", 60.0) if span < 7200 else ("hours", 3600.0)
        pts = [((float(r["completed_at"]) - created_at) / scale, float(r["fitness"])) for r in done]
        x_label = f"{unit} since the experiment was created"
    else:
        done.sort(key=lambda r: (r.get("completion_rank") is None, r.get("completion_rank") or 0, r["proposal_seq"]))
        pts = [(float(i), float(r["fitness"])) for i, r in enumerate(done)]
        x_label = "completed evaluations"
    out["progress_png"] = str(progress_plot(pts, d / "progress.png", x_label=x_label,
                                            title=f"{name} progress" if name else ""))
    front = [(float(r["accuracy"]), float(r["latency_ms"])) for r in done
             if r.get("accuracy") is not None and r.get("latency_ms") is not None]
    out["front_png"] = str(front_plot(front, d / "front.png", title=f"{name} accuracy vs latency" if name else ""))
    from ui.ancestry import ancestry_plot

    out["ancestry_png"] = str(ancestry_plot(records, d / "ancestry.png", created_at=created_at,
                                            title=f"{name}: individuals and the best one's ancestry" if name else ""))
    if curves:
        write_table(curves, CURVE_COLUMNS, d / "curves.csv")
        out["curves_csv"] = str(d / "curves.csv")
        leaders = {int(r["proposal_seq"]) for r in sorted(done, key=lambda r: -float(r["fitness"]))[:5]}
        out["learning_curves_png"] = str(learning_curves_plot(curves, leaders, d / "learning_curves.png",
                                                              title=f"{name} learning curves" if name else ""))
    return out
