"""benchmarks/device_check.py on the CPU: the whole accelerator check at CPU sizes, its time budget and its
interruption. (What it measures on a GPU can only be seen on one; here every section's path runs.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.jax, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.py"
SECTIONS = ("device", "compile", "throughput", "workers", "tiny_training")
#: The project's dependencies that the training path must not need (the docstring's "no wheels" claim).
NOT_NEEDED = {"grpc", "google", "sqlalchemy", "alembic", "psycopg", "typer", "PIL", "matplotlib"}


def _run(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    try:
        report = json.loads(out.stdout)  # stdout is the one JSON object and nothing else
    except ValueError:
        raise AssertionError(f"stdout is not one JSON object:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}") from None
    return out.returncode, report, out.stderr


@pytest.mark.timeout(1500)
def test_cpu_quick_runs_every_section_and_the_tiny_child_learns() -> None:
    # The 8-minute budget is the GPU machine's; a loaded 2-core machine may need longer at CPU sizes, and a
    # section stopped by the budget would fail this test for the machine's sake, not the script's.
    rc, report, stderr = _run("--cpu", "--quick", "--budget-s", "1200", timeout=1400)
    assert rc == 0, stderr[-3000:]
    for name in SECTIONS:
        assert "error" not in report[name] and "skipped" not in report[name], (name, report[name])
    allowed = [p for p in report["problems"] if p != "throughput.torch: skipped: torch not installed"]
    assert allowed == [], report["problems"]
    assert report["mode"] == {"cpu": True, "quick": True}
    assert report["device"]["platform"] == "cpu" and report["device"]["name"]
    assert report["child"]["dtype"] == "float32"
    assert {"jax", "flax", "optax", "torch", "python"} <= set(report["versions"])
    assert report["wall_seconds"] > 0 and len(report["load_average"]["end"]) == 3

    cold, warm = report["compile"]["cold"], report["compile"]["warm"]
    assert cold["cache_hits"] == 0 and cold["cache_misses"] > 0 and report["compile"]["cache_entries"] > 0
    assert warm["cache_hits"] > 0 and warm["cache_misses"] == 0  # the new process loaded every executable
    assert warm["backend_s"] < cold["backend_s"]

    amoeba = report["throughput"]["amoeba"]
    assert amoeba["images_per_s"] > 0 and amoeba["params"] > 0 and amoeba["cache_hits"] > 0
    peer = report["throughput"]["torch"]
    if "skipped" in peer:
        assert peer == {"skipped": "torch not installed"} and report["throughput"]["ratio"] is None
    else:
        assert peer["params"] == amoeba["params"] and peer["images_per_s"] > 0
        assert report["throughput"]["ratio"] == pytest.approx(amoeba["images_per_s"] / peer["images_per_s"], rel=1e-2)

    runs = report["workers"]["runs"]
    assert [r["workers"] for r in runs] == [1, 2]  # --quick caps K at 2
    for r in runs:
        assert len(r["per_worker_images_per_s"]) == r["workers"] and all(v > 0 for v in r["per_worker_images_per_s"])
        assert r["total_images_per_s"] == pytest.approx(sum(r["per_worker_images_per_s"]), abs=0.01)  # 3 decimals
        assert all(h > 0 for h in r["cache_hits"])  # every worker loaded the child compiled by the compile section
    assert set(report["workers"]["total_vs_one"]) == {"2"}

    tiny = report["tiny_training"]
    assert tiny["chance"] == 0.1 and tiny["above_chance"] is True
    assert tiny["accuracy"] >= 0.2, tiny  # the learnable fixture; chance is 0.1 on 256 validation images
    assert tiny["examples"]["validation"] == 256 and tiny["steps"] > 0

    assert not NOT_NEEDED & set(report["third_party_modules"]), report["third_party_modules"]
    assert {"jax", "flax", "optax"} <= set(report["third_party_modules"])


def test_a_spent_budget_skips_the_sections_and_still_prints_the_object() -> None:
    rc, report, _ = _run("--cpu", "--quick", "--budget-s", "30", timeout=300)
    assert rc == 0
    assert report["device"]["platform"] == "cpu"
    for name in SECTIONS[1:]:
        assert report[name]["skipped"] == "time budget", report[name]
    assert report["problems"] == [f"{name}: skipped: time budget" for name in SECTIONS[1:]]


def test_an_interrupted_run_prints_what_it_has() -> None:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--cpu", "--quick"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 240
        for line in proc.stderr:  # the device section's line: the compile section has started
            if "device:" in line or time.monotonic() > deadline:
                break
        time.sleep(2)
        os.kill(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    report = json.loads(stdout)
    assert report["device"]["platform"] == "cpu"
    assert report["compile"]["skipped"] == "interrupted (SIGINT)"
    assert report["tiny_training"]["skipped"] == "interrupted (SIGINT)"
