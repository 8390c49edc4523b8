"""``amoeba up`` on an lse-tiny config as a user runs it: real training of Large-Scale Evolution children on the
CIFAR fixture from copies of the trivial seed, children starting from their parents' weights, then
``replay --verify`` and the exported ancestry figure; ``amoeba lineage`` back to a seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from configs import load_config
from tests.fixtures_data import write_cifar_archive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _amoeba(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900, check=False)


def test_lse_tiny_evolves_from_seeds_with_inherited_weights_and_replays(tmp_path: Path) -> None:
    write_cifar_archive(tmp_path / "data", per_batch=120, test_size=10)
    # lse-tiny with a smaller population and budget, so the run stays short.
    config = {**load_config("lse-tiny"), "population": 4, "evaluations": 14, "algorithm_options": {"min_population": 2}}
    (tmp_path / "lse.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")} | {"AMOEBA_CACHE": str(tmp_path / "cache")}
    db = f"sqlite:///{tmp_path / 'amoeba.db'}"
    done = _amoeba(env, "up", "--config", str(tmp_path / "lse.yaml"), "--workers", "1", "--data-dir",
                   str(tmp_path / "data"), "--db", db, "--results", str(tmp_path / "results"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["state"], summary["completed"], summary["failed"]) == ("done", 14, 0)
    verified = _amoeba(env, "replay", "--db", db, "--verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout + verified.stderr
    with Image.open(tmp_path / "results" / "lse-tiny" / "ancestry.png") as img:
        img.verify()
    history = json.loads((tmp_path / "results" / "lse-tiny" / "history.json").read_text())
    seeds = [r for r in history if r["proposal_seq"] < 4]
    assert all(r["mutation"] == "seed" and r["parent_seq"] is None for r in seeds)
    assert len({r["fingerprint"] for r in seeds}) == 1
    # The best of the run is at least as good as the best seed (the fixture is learnable: chance is 0.1).
    assert max(r["accuracy"] for r in history) >= max(r["accuracy"] for r in seeds) > 0.2
    best = max(history, key=lambda r: (r["accuracy"], -r["proposal_seq"]))
    lineage = _amoeba(env, "lineage", "--db", db, "--seq", str(best["proposal_seq"]), "--json")
    assert lineage.returncode == 0, lineage.stderr
    chain = json.loads(lineage.stdout)["chain"]
    assert chain[0]["mutation"] == "seed" and chain[-1]["proposal_seq"] == best["proposal_seq"]
    # What each child started from, as the worker recorded it with its kept weights.
    started = {}
    for manifest in (tmp_path / "amoeba-artifacts").glob("lse-tiny/*/manifest.json"):
        doc = json.loads(manifest.read_text())
        started[doc["mutation"]] = doc["metrics"]
    inheriting = [m for mutation, m in started.items() if mutation != "seed" and m.get("inherited_params")]
    assert inheriting, started
    full = [m for m in inheriting if m["inherited_params"] == m["params"]]
    if full:  # a child with all of its parent's weights starts where the parent ended: well above chance
        assert sum(m["initial_accuracy"] for m in full) / len(full) > 0.2
    for mutation, m in started.items():
        if mutation == "reset_weights":
            assert m["inherited_params"] == 0
