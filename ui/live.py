"""Following an experiment: the live status view on a terminal, plain progress lines anywhere else."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console
from rich.live import Live

from ui.status import render_plain, render_status

Snapshot = Mapping[str, Any]


def finished(doc: Snapshot) -> bool:
    """The default stop condition: the experiment reached its target or was marked done."""
    return doc.get("state") == "done" or (int(doc.get("target", 0)) > 0 and int(doc.get("completed", 0)) >= int(doc["target"]))


def follow(
    fetch: Callable[[], Snapshot],
    *,
    console: Console | None = None,
    interval: float = 2.0,
    stop: Callable[[Snapshot], bool] = finished,
    live: bool | None = None,
    max_updates: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Snapshot:
    """Fetch status documents every ``interval`` seconds until ``stop(doc)``; return the last one.

    ``live`` defaults to whether the console is a terminal: then the view refreshes in place (Rich
    Live); otherwise one plain line is printed whenever progress changes, and nothing ever waits for
    input. ``fetch`` errors and KeyboardInterrupt propagate, so the caller decides how to stop.
    """
    console = console or Console()
    in_place = console.is_terminal if live is None else live
    updates = 0
    doc = fetch()
    if in_place:
        with Live(render_status(doc), console=console, auto_refresh=False, transient=False) as view:
            while True:
                updates += 1
                if stop(doc) or (max_updates is not None and updates >= max_updates):
                    return doc
                sleep(interval)
                doc = fetch()
                view.update(render_status(doc), refresh=True)
    last_line = None
    while True:
        updates += 1
        # Only progress matters in a log: skip lines whose counters did not move.
        key = (doc.get("state"), doc.get("completed"), doc.get("failed"), doc.get("rejected"),
               (doc.get("best") or {}).get("fingerprint"))
        if key != last_line:
            console.print(render_plain(doc), markup=False, highlight=False, soft_wrap=True)
            last_line = key
        if stop(doc) or (max_updates is not None and updates >= max_updates):
            return doc
        sleep(interval)
        doc = fetch()
