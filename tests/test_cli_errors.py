"""The amoeba command: help, and one-line errors with a non-zero exit for every user mistake."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def amoeba(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=60, check=False)


def test_bare_command_shows_help_and_exits_zero() -> None:
    proc = amoeba()
    assert proc.returncode == 0
    assert "Usage" in proc.stdout and "bench" in proc.stdout


def test_usage_errors_are_one_line() -> None:
    for args, text in [(["nope"], "No such command"), (["bench", "nb201", "--runs", "x"], "--runs"),
                       (["bench", "nb201", "--no-such-flag"], "no-such-flag")]:
        proc = amoeba(*args)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("amoeba: error:") and text in lines[0]
