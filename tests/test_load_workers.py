"""Load: 64 concurrent table workers (threads, one channel each) against one ``amoeba server`` process on SQLite.

No errors at all (no faults are injected), exactly C evaluations counted, the invariants hold; the lease
latency percentiles are printed (run with ``-s``); the database's size and the server's RSS are measured at
20 %, 60 % and 100 % of the run, and the second span's growth per evaluation must not be much larger than the
first's: nothing on the hot path grows with the history.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from chaos_helpers import ServerProcess, ThreadWorker, check_invariants, create_experiment, experiment_config, free_port

from worker.loop import Backoff

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKERS = 64
C = 2400
MARKS = (0.2, 0.6, 1.0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_64_workers_against_one_server(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    create_experiment(sqlite_url, experiment_config("load", evaluations=C, population=50, sample=10,
                                                    lease_timeout_s=60.0))
    server = ServerProcess(sqlite_url, free_port())
    server.start()
    samples: list[tuple[int, int, int, float]] = []  # (completed, db bytes, server RSS KiB, time)
    watching = threading.Event()

    def watch() -> None:
        # A reader of its own sees the committed size (WAL included): page_count * page_size.
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            for mark in MARKS:
                target = int(mark * C)
                while not watching.is_set():
                    completed = conn.execute("SELECT completed FROM experiments WHERE name = 'load'").fetchone()[0]
                    if completed >= target:
                        pages = conn.execute("PRAGMA page_count").fetchone()[0]
                        size = pages * conn.execute("PRAGMA page_size").fetchone()[0]
                        samples.append((completed, size, server.rss_kib(), time.monotonic()))
                        break
                    time.sleep(0.02)
        finally:
            conn.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    workers = [ThreadWorker(server.address, "load", f"load-{k:02d}",
                            backoff=Backoff(base_s=0.05, cap_s=0.5, give_up_after_s=60)) for k in range(WORKERS)]
    try:
        for w in workers:
            w.start()
        summaries = [w.join(180) for w in workers]
        elapsed = time.monotonic() - started
        watcher.join(30)
    finally:
        watching.set()
        assert server.stop() == 0
    assert len(samples) == len(MARKS), samples

    # No errors other than designed ones, and with no faults there are none: every call answered OK.
    codes = [code for w in workers for _, _, _, code in w.client.calls]
    assert set(codes) == {None}, {str(c) for c in codes}
    assert all(s.exit_reason == "done" for s in summaries)
    assert sum(s.evaluated for s in summaries) == C  # nothing counted twice, nothing lost
    assert sum(s.evaluated > 0 for s in summaries) >= WORKERS // 2
    outcome = check_invariants(sqlite_url, "load")
    assert outcome.lost == 0 and outcome.duplicates == 0 and outcome.expired == 0

    # Lease latency: LeaseWork, and ReportResult with lease_next (the report that leases the next work).
    lease_calls = [(t, d) for w in workers for m, t, d, _ in w.client.calls if m in ("LeaseWork", "ReportResult")]
    latencies = [d for _, d in lease_calls]
    (n0, s0, r0, t0), (n1, s1, r1, t1), (n2, s2, r2, t2) = samples
    first_bytes, second_bytes = (s1 - s0) / (n1 - n0), (s2 - s1) / (n2 - n1)
    first_rss, second_rss = (r1 - r0) * 1024 / (n1 - n0), (r2 - r1) * 1024 / (n2 - n1)
    figures = {
        "workers": WORKERS, "evaluations": C, "seconds": round(elapsed, 1),
        "evaluations_per_s": round(C / elapsed, 1), "lease_calls": len(latencies),
        "lease_p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "lease_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "db_bytes_per_evaluation": [round(first_bytes), round(second_bytes)],
        "server_rss_bytes_per_evaluation": [round(first_rss), round(second_rss)],
        "spans": [[n0, n1], [n1, n2]], "db_bytes": [s0, s1, s2], "server_rss_kib": [r0, r1, r2],
        "span_seconds": [round(t1 - t0, 1), round(t2 - t1, 1)],
    }
    print("\nload:", json.dumps(figures, sort_keys=True))
    # Flat per evaluation: the second span may not grow much faster than the first (a hot path that read
    # or kept the history would grow with it). Slack: 25 % plus a page per 10 evaluations for allocation steps.
    assert second_bytes <= 1.25 * first_bytes + 410, figures
    # RSS moves in allocator steps (and the service's bounded genome cache fills): allow 50 % plus 2 KiB per
    # evaluation (about 2 MiB over the span); a hot path that kept the history would grow far faster.
    assert second_rss <= 1.5 * max(first_rss, 0.0) + 2048, figures
