"""The status view: rendered text carries the numbers, the front is highlighted, empty states render."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from rich.console import Console

from evolution import objectives
from ui.charts import BLOCKS, FRONT, resample_steps, scatter, sparkline
from ui.derive import best_so_far, pareto_flags
from ui.schema import snapshot_problems
from ui.status import fmt_duration, render_plain, render_status

pytestmark = pytest.mark.unit


def _snapshot() -> dict[str, Any]:
    # Three points: (0.93, 1.0) and (0.95, 2.0) are the front; (0.90, 3.0) is dominated by both.
    pareto = [
        {"fingerprint": "aaaaaaaaaaaaaaaa", "accuracy": 0.93, "latency_ms": 1.0},
        {"fingerprint": "bbbbbbbbbbbbbbbb", "accuracy": 0.95, "latency_ms": 2.0},
        {"fingerprint": "cccccccccccccccc", "accuracy": 0.90, "latency_ms": 3.0},
    ]
    flags = pareto_flags([(p["accuracy"], p["latency_ms"]) for p in pareto])
    for p, f in zip(pareto, flags, strict=True):
        p["on_front"] = f
    return {
        "schema": 1,
        "experiment": "cifar-search",
        "state": "running",
        "completed": 123,
        "failed": 7,
        "rejected": 2,
        "target": 500,
        "evaluations_per_hour": 812.5,
        "eta_seconds": 1671.0,
        "generated_at": 10_000.0,
        "best": {"fingerprint": "bbbbbbbbbbbbbbbb", "accuracy": 0.95, "latency_ms": 2.0, "fitness": 0.95,
                 "proposal_seq": 101, "summary": "normal sep3x3(0,1) avg3x3(1,2) | reduce max3x3(0,1)"},
        "population": {"size": 4, "best": 0.95, "median": 0.915, "worst": 0.881, "ages": [0, 1, 2, 3]},
        "best_so_far": [[0.0, 0.8], [60.0, 0.9], [600.0, 0.95]],
        "pareto": pareto,
        "top": [
            {"proposal_seq": 101, "fingerprint": "bbbbbbbbbbbbbbbb", "fitness": 0.95, "accuracy": 0.95,
             "latency_ms": 2.0, "summary": "normal sep3x3(0,1)", "parent_seq": 77, "age": 3},
            {"proposal_seq": 12, "fingerprint": "aaaaaaaaaaaaaaaa", "fitness": 0.93, "accuracy": 0.93,
             "latency_ms": 1.0, "summary": "normal avg3x3(0,0)", "parent_seq": None, "age": 9},
        ],
        "workers": [
            {"worker_id": "gpu-worker-1", "host": "node7", "alive": True, "lease": 130,
             "last_heartbeat": 9_995.0, "evaluations": 61},
            {"worker_id": "gpu-worker-2", "host": "node8", "alive": False, "lease": None,
             "last_heartbeat": 9_400.0, "evaluations": 62},
        ],
    }


def _render(snap: dict[str, Any], width: int = 100) -> tuple[str, Console]:
    console = Console(record=True, width=width, color_system="truecolor", force_terminal=True)
    console.print(render_status(snap))
    return console.export_text(styles=False, clear=False), console


def test_the_fixture_conforms_to_the_schema() -> None:
    assert snapshot_problems(_snapshot()) == []


def test_numbers_appear_in_the_rendered_view() -> None:
    text, _ = _render(_snapshot())
    for needle in ("cifar-search", "running", "123 / 500", "24.6%", "failed 7", "rejected 2", "812.5 eval/h",
                   "ETA 27m 51s", "bbbbbbbbbbbbbbbb", "#101", "median 0.915", "worst 0.881", "size 4",
                   "0.8 → 0.95", "gpu-worker-1", "node7", "#130", "5s ago", "alive", "lost", "10m 00s ago",
                   "#77", "random", "normal sep3x3(0,1)"):
        assert needle in text, needle
    # The best-so-far sparkline ends at its top block: the latest value is the maximum.
    spark_line = next(line for line in text.splitlines() if BLOCKS[-1] in line)
    assert spark_line.strip(" │").endswith(BLOCKS[-1])


def test_front_points_are_highlighted_and_dominated_ones_are_dim() -> None:
    snap = _snapshot()
    _, console = _render(snap)
    styled = console.export_text(styles=True, clear=False)
    # Two front markers, bold green; the dominated point is a dim dot.
    assert styled.count(FRONT) == 2
    assert styled.count("\x1b[1;32m" + FRONT) == 2  # bold green
    assert "\x1b[2m·" in styled  # dim
    assert "3 points, 2 on the front" in console.export_text()
    chart = scatter([(p["latency_ms"], p["accuracy"], p["on_front"]) for p in snap["pareto"]], width=30, height=8)
    spans = {chart.plain[s.start:s.end]: str(s.style) for s in chart.spans if chart.plain[s.start:s.end] in (FRONT, "·")}
    assert spans[FRONT] == "bold green"
    assert spans["·"] == "dim"
    # Lowest latency is in the first column, the highest accuracy in the top row.
    rows = [line for line in chart.plain.splitlines() if "│" in line]
    assert rows[0].split("│")[1].index(FRONT) > 0
    assert rows[-1].split("│")[1].rstrip().endswith("·")


def test_front_marker_wins_a_shared_cell() -> None:
    # Same cell: the front point is drawn after the dominated one whatever the input order.
    chart = scatter([(1.0, 0.9, True), (1.0, 0.9, False), (5.0, 0.5, False)], width=10, height=4)
    assert FRONT in chart.plain


def test_empty_population_renders_without_errors() -> None:
    snap = _snapshot()
    snap.update(completed=0, failed=0, best=None, best_so_far=[], pareto=[], top=[], workers=[],
                evaluations_per_hour=0.0, eta_seconds=None)
    snap["population"] = {"size": 0, "best": None, "median": None, "worst": None, "ages": []}
    assert snapshot_problems(snap) == []
    text, _ = _render(snap, width=80)
    for needle in ("0 / 500", "no completed individuals yet", "empty population", "no points yet", "none yet",
                   "no workers yet", "ETA -"):
        assert needle in text, needle
    line = render_plain(snap)
    assert "0/500 (0.0%)" in line and "best -" in line and "\n" not in line


def test_narrow_console_keeps_every_top_column() -> None:
    text, _ = _render(_snapshot(), width=70)
    assert "bbbbbbbbbbbbbbbb" in text and "#77" in text
    assert all(len(line) <= 70 for line in text.splitlines())


def test_plain_line_is_one_line_with_progress_and_best() -> None:
    line = render_plain(_snapshot())
    # Progress lines show the rejected children too.
    assert line == ("cifar-search running | 123/500 (24.6%) | failed 7 | rejected 2 | best 0.95 (acc 0.95, 2 ms, #101 "
                    "bbbbbbbbbbbbbbbb) | workers 1 | 812.5 eval/h | ETA 27m 51s")
    assert "\n" not in line


def test_plain_line_names_a_pause_or_the_last_failure() -> None:
    snap = _snapshot()
    snap["last_failure"] = "out of memory\nwhile compiling"
    assert render_plain(snap).endswith(" | ETA 27m 51s | last failure: out of memory while compiling")
    snap["paused_reason"] = "circuit breaker: 5 failures in a row"
    line = render_plain(snap)
    # A pause says why instead of the last failure.
    assert line.endswith(" | circuit breaker: 5 failures in a row") and "last failure" not in line
    snap["paused_reason"] = "x" * 500
    assert len(render_plain(snap).rsplit(" | ", 1)[1]) == 160
    # A table run completes more than one evaluation a second: the rate is per second then.
    assert "| 2.0 eval/s |" in render_plain({**_snapshot(), "evaluations_per_hour": 7200.0})


def test_schema_checker_names_each_problem() -> None:
    snap = copy.deepcopy(_snapshot())
    del snap["target"]
    snap["best"]["fitness"] = "high"
    snap["workers"][1]["alive"] = "yes"
    snap["best_so_far"] = [[0.0, float("nan")]]
    problems = snapshot_problems(snap)
    assert "target: missing (integer)" in problems
    assert any(p.startswith("best.fitness: expected number") for p in problems)
    assert any(p.startswith("workers[1].alive: expected boolean") for p in problems)
    assert any(p.startswith("best_so_far: expected") for p in problems)
    assert len(problems) == 4
    assert snapshot_problems([]) == ["the status document must be a JSON object"]


def test_sparkline_scales_and_marks_gaps() -> None:
    assert sparkline([0.0, 0.5, 1.0]) == BLOCKS[0] + BLOCKS[4] + BLOCKS[-1]
    assert sparkline([None, 2.0, 2.0]) == " " + BLOCKS[4] * 2
    assert sparkline([]) == ""


def test_resample_steps_holds_the_last_value() -> None:
    assert resample_steps([[0.0, 1.0], [10.0, 2.0]], 4) == [1.0, 1.0, 1.0, 2.0]
    assert resample_steps([[0.0, 1.0], [3.0, 3.0], [10.0, 5.0]], 5) == [1.0, 3.0, 3.0, 3.0, 5.0]
    assert resample_steps([], 5) == []


def test_pareto_flags_and_best_so_far() -> None:
    pts = [(0.9, 1.0), (0.95, 2.0), (0.9, 2.0), (0.95, 2.0), (0.8, 0.5)]
    assert pareto_flags(pts) == [True, True, False, True, True]
    assert best_so_far([(3.0, 0.5), (1.0, 0.7), (2.0, 0.6), (4.0, 0.9)]) == [[1.0, 0.7], [4.0, 0.9]]


def test_the_view_and_the_search_share_one_front() -> None:
    # ui.derive re-exports the search's pareto_flags: the front the status view draws is the one
    # pareto selection picks parents from.
    assert pareto_flags is objectives.pareto_flags
    rng = random.Random(5)
    for _ in range(300):
        pts = [(rng.choice((0.8, 0.9, 0.95)), rng.choice((None, 1.0, 2.0, 3.0))) for _ in range(rng.randrange(1, 9))]
        slow = [(a, float("inf") if lat is None else lat) for a, lat in pts]
        dominated = [any(b[0] >= a[0] and b[1] <= a[1] and b != a for b in slow) for a in slow]
        assert pareto_flags(pts) == [not d for d in dominated], pts
        assert objectives.pareto_front_indices(pts) == [i for i, d in enumerate(dominated) if not d]


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (5.4, "5s"), (65, "1m 05s"), (3700, "1h 01m"),
                                               (90000, "1d 01h")])
def test_fmt_duration(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text
