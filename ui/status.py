"""The status view: Rich renderables and a plain progress line over a status document (ui.schema)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ui.charts import resample_steps, scatter, sparkline
from ui.derive import histogram

STATE_STYLE = {"running": "bold green", "paused": "bold yellow", "done": "bold cyan"}


def fmt_num(value: float | None) -> str:
    """Four significant digits, or a dash for a missing value."""
    return "-" if value is None else f"{value:.4g}"


def fmt_duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s`` or ``42s``; a dash when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    s = round(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def fmt_rate(per_hour: float | None) -> str:
    """Evaluations per hour, or per second once there are more than one a second (a table run)."""
    rate = float(per_hour or 0.0)
    return f"{rate / 3600:.1f} eval/s" if rate >= 3600 else f"{rate:.1f} eval/h"


def cut(text: object, limit: int = 100) -> str:
    """One line of at most ``limit`` characters (a reason may quote a whole genome)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _percent(done: int, target: int) -> float:
    return 100.0 * done / target if target > 0 else 0.0


def progress_panel(snap: Mapping[str, Any], width: int = 60) -> Panel:
    """Completed / C with a bar, failures, rejected reports, evaluations per hour and ETA."""
    done, target = int(snap.get("completed", 0)), int(snap.get("target", 0))
    filled = min(width, round(width * done / target)) if target > 0 else 0
    bar = Text()
    bar.append("━" * filled, style="green")
    bar.append("━" * (width - filled), style="grey23")
    line = Text()
    line.append(f"completed {done} / {target}", style="bold")
    line.append(f" ({_percent(done, target):.1f}%)")
    line.append("  failed ")
    line.append(str(snap.get("failed", 0)), style="red" if snap.get("failed") else "")
    line.append(f"  rejected {snap.get('rejected', 0)}")
    if snap.get("stopped"):
        line.append(f"  stopped early {snap['stopped']} (saved {fmt_duration(snap.get('saved_train_seconds'))})",
                    style="cyan")
    if "leased" in snap:
        line.append(f"  leased {snap['leased']}")
    if snap.get("queued"):
        line.append(f"  queued {snap['queued']}", style="yellow")
    line.append(f"  {fmt_rate(snap.get('evaluations_per_hour'))}")
    line.append(f"  ETA {fmt_duration(snap.get('eta_seconds'))}")
    rows: list[Any] = [bar, line]
    if snap.get("paused_reason"):
        rows.append(Text(cut(snap["paused_reason"], 4 * width), style="bold yellow"))
    elif snap.get("last_failure"):
        rows.append(Text(f"last failure: {cut(snap['last_failure'], 2 * width)}", style="red"))
    return Panel(Group(*rows), title="progress", title_align="left")


def best_panel(snap: Mapping[str, Any], width: int = 60) -> Panel:
    """The best individual and the best-so-far sparkline over time."""
    best = snap.get("best")
    body = Text()
    if not best:
        body.append("no completed individuals yet", style="dim")
    else:
        body.append(f"fitness {fmt_num(best.get('fitness'))}", style="bold green")
        body.append(f"  accuracy {fmt_num(best.get('accuracy'))}  latency {fmt_num(best.get('latency_ms'))} ms")
        body.append(f"  #{best.get('proposal_seq')} {best.get('fingerprint', '')}\n")
        body.append(str(best.get("summary", "")), style="dim")
    series = snap.get("best_so_far") or []
    if series:
        first, last = float(series[0][1]), float(series[-1][1])
        span = float(series[-1][0]) - float(series[0][0])
        body.append(f"\nbest so far {fmt_num(first)} → {fmt_num(last)} in {len(series)} improvements over "
                    f"{fmt_duration(span)}\n", style="dim")
        body.append(sparkline(resample_steps(series, width)), style="green")
    return Panel(body, title="best", title_align="left")


def population_panel(snap: Mapping[str, Any], bins: int = 20) -> Panel:
    """Population size, best / median / worst fitness and the age distribution as a small histogram."""
    pop = snap.get("population") or {}
    body = Text()
    size = int(pop.get("size", 0))
    if size == 0:
        body.append("empty population", style="dim")
        return Panel(body, title="population", title_align="left")
    body.append(f"size {size}" + (f"/{pop['target_size']}" if pop.get("target_size") else "") + "  ")
    body.append(f"best {fmt_num(pop.get('best'))}", style="green")
    body.append(f"  median {fmt_num(pop.get('median'))}  ")
    body.append(f"worst {fmt_num(pop.get('worst'))}", style="red")
    ages = [int(a) for a in pop.get("ages") or []]
    counts, bin_width = histogram(ages, bins)
    if counts:
        body.append("\nages ")
        body.append(sparkline([float(c) for c in counts], lo=0.0), style="cyan")
        body.append(f"  0..{max(ages)} (bins of {bin_width}, oldest {max(ages)})", style="dim")
    return Panel(body, title="population", title_align="left")


def pareto_panel(snap: Mapping[str, Any], width: int = 60, height: int = 10) -> Panel:
    """The accuracy vs latency scatter: every point dim, the non-dominated front highlighted."""
    pts = [
        (float(p["latency_ms"]), float(p["accuracy"]), bool(p.get("on_front")))
        for p in snap.get("pareto") or []
        if p.get("latency_ms") is not None and p.get("accuracy") is not None
    ]
    on_front = sum(1 for p in pts if p[2])
    title = f"accuracy vs latency ({len(pts)} points, {on_front} on the front)"
    return Panel(scatter(pts, width=width, height=height), title=title, title_align="left")


def top_table(entries: Sequence[Mapping[str, Any]], summary_width: int = 40) -> Table:
    """Top-K individuals: fingerprint, fitness, accuracy, latency, parent, age and a one-line genome summary."""
    names = ("#", "fingerprint", "fitness", "accuracy", "lat ms", "parent", "age")
    rows = []
    for e in entries:
        parent = e.get("parent_seq")
        rows.append((
            str(e.get("proposal_seq", "")), str(e.get("fingerprint", "")), fmt_num(e.get("fitness")),
            fmt_num(e.get("accuracy")), fmt_num(e.get("latency_ms")),
            "random" if parent is None else f"#{parent}", str(e.get("age", "")), str(e.get("summary", "")),
        ))
    table = Table(title="top individuals", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # Every column but the genome summary keeps its full width; the summary takes what is left.
    for i, name in enumerate(names):
        width = max([len(name)] + [len(r[i]) for r in rows])
        table.add_column(name, justify="left" if name == "fingerprint" else "right", no_wrap=True, min_width=width)
    table.add_column("genome", overflow="ellipsis", max_width=summary_width)
    if not rows:
        table.add_row("", Text("none yet", style="dim"), "", "", "", "", "", "")
    for row in rows:
        table.add_row(*row[:-1], Text(row[-1], no_wrap=True, overflow="ellipsis"))
    return table


def workers_table(workers: Sequence[Mapping[str, Any]], now: float | None = None,
                  running: Sequence[Mapping[str, Any]] = ()) -> Table:
    """Workers: alive or lost, current lease with its last progress, last heartbeat (relative to ``now``
    when given), evaluations."""
    progress = {int(r["proposal_seq"]): r for r in running if r.get("epoch") is not None}
    table = Table(title="workers", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("worker", "left"), ("host", "left"), ("state", "left"), ("lease", "right"),
                          ("progress", "right"), ("last heartbeat", "right"), ("evaluations", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    if not workers:
        table.add_row(Text("no workers yet", style="dim"), "", "", "", "", "", "")
    for w in workers:
        alive = bool(w.get("alive"))
        beat = w.get("last_heartbeat")
        if beat is None:
            heard = "never"
        elif now is not None:
            heard = f"{fmt_duration(max(0.0, now - float(beat)))} ago"
        else:
            heard = f"{float(beat):.0f}"
        lease = w.get("lease")
        last = progress.get(int(lease)) if lease is not None else None
        shown = "-" if last is None else f"epoch {last['epoch']} acc {fmt_num(last.get('accuracy'))}"
        table.add_row(
            str(w.get("worker_id", "")), str(w.get("host", "")),
            Text("alive", style="green") if alive else Text("lost", style="bold red"),
            "-" if lease is None else f"#{lease}", shown, heard, str(w.get("evaluations", 0)),
        )
    return table


def header(snap: Mapping[str, Any]) -> Text:
    """Experiment name, state, space and (for time travel) the event sequence number."""
    state = str(snap.get("state", "?"))
    text = Text()
    text.append(str(snap.get("experiment", "?")), style="bold")
    text.append("  ")
    text.append(state, style=STATE_STYLE.get(state, "bold"))
    if snap.get("space"):
        text.append(f"  space {snap['space']}", style="dim")
    if snap.get("algorithm"):
        text.append(f"  {snap['algorithm']}", style="dim")
    if snap.get("seq") is not None:
        text.append(f"  as of event {snap['seq']}", style="yellow")
    return text


class StatusView:
    """The whole status view of one status document; charts take the width the console offers."""

    def __init__(self, snapshot: Mapping[str, Any], chart_height: int = 10) -> None:
        self.snapshot = snapshot
        self.chart_height = chart_height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap = self.snapshot
        # Panels take 4 columns of border and padding; the scatter also needs its y labels.
        width = max(10, options.max_width - 4)
        now = snap.get("generated_at")
        yield header(snap)
        yield progress_panel(snap, width=width)
        yield best_panel(snap, width=width)
        yield population_panel(snap, bins=min(40, width))
        yield pareto_panel(snap, width=max(10, width - 12), height=self.chart_height)
        yield top_table(snap.get("top") or [], summary_width=max(20, options.max_width - 60))
        yield workers_table(snap.get("workers") or [], now=None if now is None else float(now),
                            running=snap.get("running") or [])


def render_status(snapshot: Mapping[str, Any], chart_height: int = 10) -> RenderableType:
    """The status view of a status document (ui.schema) as one Rich renderable."""
    return StatusView(snapshot, chart_height=chart_height)


def render_plain(snapshot: Mapping[str, Any]) -> str:
    """One progress line for logs and pipes (no colour, no cursor movement)."""
    done, target = int(snapshot.get("completed", 0)), int(snapshot.get("target", 0))
    parts = [
        f"{snapshot.get('experiment', '?')} {snapshot.get('state', '?')}",
        f"{done}/{target} ({_percent(done, target):.1f}%)",
        f"failed {snapshot.get('failed', 0)}",
        f"rejected {snapshot.get('rejected', 0)}",
    ]
    best = snapshot.get("best")
    if best:
        parts.append(
            f"best {fmt_num(best.get('fitness'))} (acc {fmt_num(best.get('accuracy'))}, "
            f"{fmt_num(best.get('latency_ms'))} ms, #{best.get('proposal_seq')} {best.get('fingerprint', '')})"
        )
    else:
        parts.append("best -")
    alive = sum(1 for w in snapshot.get("workers") or [] if w.get("alive"))
    parts.append(f"workers {alive}")
    parts.append(fmt_rate(snapshot.get("evaluations_per_hour")))
    parts.append(f"ETA {fmt_duration(snapshot.get('eta_seconds'))}")
    if snapshot.get("paused_reason"):
        parts.append(cut(snapshot["paused_reason"], 160))
    elif snapshot.get("last_failure"):
        parts.append(f"last failure: {cut(snapshot['last_failure'], 100)}")
    return " | ".join(parts)
