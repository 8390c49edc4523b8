"""ui.live.follow: plain lines off a terminal (only when progress moves), an in-place view on one."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from ui.live import finished, follow

pytestmark = pytest.mark.unit


def _docs(counts: list[int], target: int = 3) -> list[dict[str, Any]]:
    return [{"experiment": "e", "state": "done" if c >= target else "running", "completed": c, "failed": 0,
             "target": target, "best": None, "population": {"size": 0}, "workers": []} for c in counts]


def _fetcher(docs: list[dict[str, Any]]) -> Any:
    it = iter(docs)
    calls = {"n": 0}

    def fetch() -> dict[str, Any]:
        calls["n"] += 1
        return next(it)

    return fetch, calls


def test_plain_lines_until_done_without_repeats() -> None:
    out = io.StringIO()
    fetch, calls = _fetcher(_docs([0, 1, 1, 2, 3, 3]))
    slept: list[float] = []
    last = follow(fetch, console=Console(file=out, width=200), interval=5.0, sleep=slept.append)
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[1].split()[0] for line in lines] == ["0/3", "1/3", "2/3", "3/3"]
    assert last["completed"] == 3 and calls["n"] == 5 and slept == [5.0] * 4
    assert "\x1b[" not in out.getvalue()


def test_live_view_on_a_terminal_ends_with_the_final_state() -> None:
    out = io.StringIO()
    fetch, calls = _fetcher(_docs([1, 2, 3]))
    console = Console(file=out, width=100, force_terminal=True)
    last = follow(fetch, console=console, sleep=lambda _s: None)
    assert last["state"] == "done" and calls["n"] == 3
    text = out.getvalue()
    assert "3 / 3" in text and "\x1b[" in text  # redrawn in place with cursor movement and colour


def test_max_updates_bounds_a_watch_that_never_finishes() -> None:
    out = io.StringIO()
    fetch, calls = _fetcher(_docs([0] * 10, target=5))
    follow(fetch, console=Console(file=out), live=False, max_updates=3, sleep=lambda _s: None)
    assert calls["n"] == 3 and len(out.getvalue().splitlines()) == 1
    assert finished({"state": "running", "completed": 5, "target": 5})
    assert not finished({"state": "running", "completed": 4, "target": 5})
