"""What a new user, then a hostile one, can do to the command line: every failure is one line with a
non-zero exit, nothing is left running or half-written, and read-only access stays read-only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
AMOEBA = [sys.executable, "-m", "cli.main"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AMOEBA_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AMOEBA, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode != 0, done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("amoeba: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _pids_of(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


def test_workers_started_by_up_die_when_up_is_sigkilled(tmp_path: Path) -> None:
    tag = f"sigkill-{os.getpid()}"
    up = subprocess.Popen([*AMOEBA, "up", "--evaluator", "table", "--evaluations", "1000000", "--name", tag,
                           "--workers", "2", "--db", f"sqlite:///{tmp_path / 'k.db'}", "--results",
                           str(tmp_path / "res")], cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    pattern = f"worker.*--experiment {tag}"
    deadline = time.monotonic() + 60
    while len(_pids_of(pattern)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _pids_of(pattern)
    assert len(workers) == 2
    up.send_signal(signal.SIGKILL)
    up.wait(10)
    deadline = time.monotonic() + 20
    while _pids_of(pattern) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _pids_of(pattern)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived the amoeba up that started them"


def _table_run(db: Path, results: Path, name: str = "same", evaluations: int = 12) -> subprocess.CompletedProcess[str]:
    return run("up", "--evaluator", "table", "--evaluations", str(evaluations), "--name", name, "--db",
               f"sqlite:///{db}", "--results", str(results), "--json", cwd=db.parent)


def test_reading_a_copied_database_leaves_nothing_beside_it(tmp_path: Path) -> None:
    done = _table_run(tmp_path / "a.db", tmp_path / "res")
    assert done.returncode == 0, done.stderr
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    shutil.copy(tmp_path / "a.db", copy_dir / "a.db")
    for args in (["status", "--db", str(copy_dir / "a.db"), "--json"],
                 ["replay", "--db", str(copy_dir / "a.db"), "--verify", "--json"]):
        out = run(*args)
        assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in copy_dir.iterdir()) == ["a.db"]


def test_results_of_another_database_are_never_overwritten_unasked(tmp_path: Path) -> None:
    results = tmp_path / "res"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = _table_run(tmp_path / "one" / "x.db", results)
    assert first.returncode == 0, first.stderr
    history = (results / "same" / "history.csv").read_text()
    second = _table_run(tmp_path / "two" / "x.db", results, evaluations=20)
    one_line_error(second, f"{results / 'same'} holds the results of experiment 'same' of {tmp_path / 'one' / 'x.db'}",
                   "--overwrite")
    assert (results / "same" / "history.csv").read_text() == history
    # Refused before the experiment was created in the second database.
    rows = sqlite3.connect(tmp_path / "two" / "x.db").execute("SELECT count(*) FROM experiments").fetchone()
    assert rows == (0,)
    # The same database resumes into its own folder; --overwrite replaces another's.
    assert _table_run(tmp_path / "one" / "x.db", results).returncode == 0
    forced = run("up", "--evaluator", "table", "--evaluations", "20", "--name", "same", "--db",
                 f"sqlite:///{tmp_path / 'two' / 'x.db'}", "--results", str(results), "--overwrite", "--json")
    assert forced.returncode == 0, forced.stderr
    assert len((results / "same" / "history.csv").read_text().splitlines()) == 21
    assert not [p for p in (results / "same").iterdir() if p.name.endswith(".tmp")]


def test_results_naming_a_file_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    done = _table_run(tmp_path / "f.db", tmp_path / "file")
    one_line_error(done, "--results", "is not a folder")
    assert not (tmp_path / "f.db").exists() or sqlite3.connect(tmp_path / "f.db").execute(
        "SELECT count(*) FROM experiments").fetchone() == (0,)


@pytest.mark.parametrize("args", [
    ["bench", "nb201", "--budget-seconds", "nan"],
    ["bench", "nb201", "--budget-seconds", "inf", "--runs", "1"],
    ["server", "--grace", "nan"],
    ["server", "--max-message-mb", "nan"],
    ["status", "--db", "x.db", "--interval", "inf"],
    ["up", "--interval", "nan"],
])
def test_every_number_is_finite(args: list[str]) -> None:
    done = run(*args, timeout=30)
    assert done.returncode == 2
    assert "must be a finite number" in done.stderr and "Traceback" not in done.stderr


def test_a_file_that_is_not_a_database_and_a_newer_database_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "text.db").write_text("hello\n")
    for args in (["status", "--db", str(tmp_path / "text.db")], ["migrate", "--db", str(tmp_path / "text.db")],
                 ["experiment", "list", "--db", str(tmp_path / "text.db")]):
        one_line_error(run(*args), "not an Amoeba database")
    newer = tmp_path / "newer.db"
    assert run("migrate", "--db", str(newer)).returncode == 0
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    for args in (["status", "--db", str(newer)], ["migrate", "--db", str(newer)],
                 ["up", "--db", str(newer), "--evaluator", "table"]):
        done = run(*args)
        one_line_error(done, "newer than this version of Amoeba", "upgrade Amoeba")
        assert "mode=ro" not in done.stderr and "file%3A" not in done.stderr


def test_an_unexpected_exception_is_one_line_and_a_log_with_the_traceback(tmp_path: Path) -> None:
    script = ("import cli.main, cli.latency\n"
              "def broken(*a, **k):\n    raise RuntimeError('something nobody expected')\n"
              "cli.main._register()\n"
              "cli.latency.load_genome = broken\n"
              "cli.main.main(['latency', '--genome', 'amoebanet-a'])\n")
    env = {**_env(), "AMOEBA_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error (RuntimeError: something nobody expected)" in lines[0]
    log = Path(lines[0].rsplit("the traceback is in ", 1)[1])
    assert log.is_file() and "Traceback" in log.read_text() and "something nobody expected" in log.read_text()


def test_version_and_flags_without_a_bool_metavar() -> None:
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("amoeba ")
    help_text = run("status", "--help").stdout
    assert "<bool>" not in help_text and "--json" in help_text
    fork = run("experiment", "fork", "--help").stdout
    assert "``" not in fork and "seeded" in fork


def test_a_json_status_of_a_table_run_has_rates_a_person_can_read(tmp_path: Path) -> None:
    done = _table_run(tmp_path / "r.db", tmp_path / "res", name="rate", evaluations=60)
    assert done.returncode == 0, done.stderr
    assert "eval/s" in done.stderr or "eval/h" in done.stderr
    assert not [ln for ln in done.stderr.splitlines() if "eval/h" in ln and float(ln.split(" eval/h")[0].split()[-1]) > 3600]
    summary = json.loads(done.stdout)
    assert summary["completed"] == 60
