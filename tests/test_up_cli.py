"""amoeba up as a user runs it, without a terminal: offline fallback, C = 500 to the summary, status, replay,
exports; Ctrl-C to the process group, then the same command resumes; and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cli.main import main
from ui.schema import snapshot_problems

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens there any more: the download is refused at once, as on a machine without network.
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")}
    return env | {"AMOEBA_CACHE": str(tmp / "cache"), "AMOEBA_CIFAR10_URL": _closed_port_url(), "COLUMNS": "120"}


def _amoeba(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def _valid_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        img.load()
        return img.size


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    return captured.out


def test_up_defaults_offline_falls_back_to_the_table_and_finishes_500(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(tmp_path)
    started = time.monotonic()
    run = _amoeba("up", "--evaluations", "500", cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    fallback = [ln for ln in run.stderr.splitlines() if "NAS-Bench-201 table experiment instead" in ln]
    assert len(fallback) == 1, run.stderr
    assert "cannot be downloaded" in fallback[0] and "To train for real" in fallback[0]
    assert "--evaluator train" in fallback[0]
    out = run.stdout.splitlines()
    # No terminal: plain progress lines (no cursor movement), then the summary.
    assert "\x1b[" not in run.stdout
    assert any(ln.startswith("nb201-table running |") for ln in out)
    summary = [ln for ln in out if ln.startswith("nb201-table done: 500/500 evaluations")]
    assert summary, run.stdout
    best_line = next(ln for ln in out if ln.startswith("best: proposal "))
    assert (tmp_path / "amoeba.db").is_file()
    assert f"database {tmp_path / 'amoeba.db'}" in run.stdout
    print(f"amoeba up C=500 table: {elapsed:.1f}s wall ({summary[0]})")

    # The same database, read by the other commands (in-process: no second interpreter start-up).
    doc = json.loads(_in_process(capsys, "status", "--db", str(tmp_path / "amoeba.db"), "--json"))
    assert snapshot_problems(doc) == []
    assert (doc["experiment"], doc["state"], doc["completed"], doc["target"], doc["failed"]) == ("nb201-table", "done", 500, 500, 0)
    assert f"({doc['best']['fingerprint']})" in best_line
    assert doc["population"]["size"] == 20
    report = json.loads(_in_process(capsys, "replay", "--db", str(tmp_path / "amoeba.db"), "--verify", "--json"))
    assert report["ok"] and report["proposals"] == 500 and report["completed"] == 500

    results = tmp_path / "amoeba-results" / "nb201-table"
    for name in ("history.csv", "history.json", "lineage.csv", "population.csv", "worker-0.log"):
        assert (results / name).is_file(), name
    assert _valid_png(results / "progress.png") == (800, 500)
    assert _valid_png(results / "front.png") == (800, 500)
    history = json.loads((results / "history.json").read_text())
    assert len(history) == 500 and {r["state"] for r in history} == {"completed"}



SLOW_CONFIG = """\
name: slow
space: nb201
population: 10
sample: 3
evaluations: 60
seed: 11
mutation: {type: edge_op}
training:
  table: {sleep_s: 0.05}
lease_timeout_s: 30
"""


def _completed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT completed FROM experiments WHERE name = 'slow'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def test_ctrl_c_stops_everything_cleanly_and_the_same_command_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(tmp_path)
    (tmp_path / "slow.yaml").write_text(SLOW_CONFIG)
    cmd = [sys.executable, "-m", "cli.main", "up", "--config", "slow.yaml", "--workers", "2", "--interval", "0.2",
           "--no-export"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "amoeba.db"
    deadline = time.monotonic() + 60
    while _completed(db) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole foreground group
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped slow at" in err and "run the same command to resume" in err
    stopped_at = _completed(db)
    assert 6 <= stopped_at < 60
    with sqlite3.connect(db) as conn:
        leased = conn.execute("SELECT count(*) FROM individuals WHERE state = 'leased'").fetchone()[0]
        released = conn.execute("SELECT count(*) FROM events WHERE kind = 'released'").fetchone()[0]
    assert leased == 0  # every worker gave its lease back before the server stopped
    assert released >= 1
    for log in (tmp_path / "amoeba-results" / "slow").glob("worker-*.log"):
        assert "(stopped)" in log.read_text()

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert "resuming experiment slow" in again.stderr
    assert "slow done: 60/60 evaluations" in again.stdout
    report = json.loads(_in_process(capsys, "replay", "--db", str(db), "--verify", "--json"))
    assert report["ok"] and report["completed"] == 60, report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The table evaluator needs a space with a tabular benchmark (the space registry says which have one).
        (["--evaluator", "table", "--space", "nasnet"],
         "the nasnet space, which has no tabular benchmark for the table evaluator (spaces with one: nb201)"),
        (["--evaluator", "gpu"], "--evaluator must be train, table or MODULE:FUNCTION, got 'gpu'"),
        (["--config", "no-such-config"], "no shipped config of that name"),
        (["--evaluations", "0"], "--evaluations must be >= 1"),
        (["--evaluator", "train"], "CIFAR-10 is not cached and cannot be downloaded"),
        (["--space", "nasnet"], "CIFAR-10 is not cached and cannot be downloaded"),
    ],
)
def test_up_mistakes_are_one_line_and_start_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in _env(tmp_path).items():
        if key.startswith("AMOEBA_"):
            monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["up", *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("amoeba: error:") and message in err, err
    assert not (tmp_path / "amoeba-results").exists()


def test_up_refuses_to_resume_an_experiment_with_another_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    import db
    from orchestrator.config import load_spec_file
    from orchestrator.service import open_service

    db.upgrade("sqlite:///amoeba.db")
    service = open_service("sqlite:///amoeba.db")
    service.create_experiment(load_spec_file(Path(__file__).parents[1] / "configs" / "nb201-table.yaml"))
    service.store.close()
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "--evaluator", "table", "--evaluations", "42"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert "exists with another config (evaluations 300 -> 42)" in err and "--name NEW" in err


def test_one_worker_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.up import local_accelerators

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert local_accelerators() == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "2"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # set but empty: CUDA sees no GPU
    assert all("CUDA_VISIBLE_DEVICES" not in env for env in local_accelerators())


def test_a_reachable_mirror_is_downloaded_from_and_a_bad_archive_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import functools
    import http.server
    import threading

    from cli.up import cifar_available

    served = tmp_path / "mirror"
    served.mkdir()
    (served / "cifar-10-python.tar.gz").write_bytes(b"not the real archive" * 100)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("AMOEBA_CACHE", str(tmp_path / "cache"))
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-python.tar.gz"
        reason = cifar_available(None, url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert reason is not None and "MD5" in reason and url in reason
    assert "downloading cifar-10-python.tar.gz" in capsys.readouterr().err
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))  # a wrong checksum is never kept
