"""``amoeba retrain`` as a user runs it: a search's best genomes trained again on the whole training split and
scored on the test split, as a final experiment of the same database with its weights kept; the same work
handed to a running cluster with ``--server``; mistakes as one line that create nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from artifacts.store import read_artifact, read_manifest
from domain import Artifact
from tests.fixtures_data import write_cifar_archive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
AMOEBA = [sys.executable, "-m", "cli.main"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")}
    return env | {"AMOEBA_CACHE": str(tmp / "cache")}


def _amoeba(tmp: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AMOEBA, *args], cwd=ROOT, env=_env(tmp), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    """A finished NB201 table search (12 evaluations) and the CIFAR-format fixture, in one folder."""
    tmp = tmp_path_factory.mktemp("retrain")
    write_cifar_archive(tmp / "data", per_batch=120, test_size=100)
    db = f"sqlite:///{tmp / 'search.db'}"
    run = _amoeba(tmp, "up", "--config", "nb201-table", "--evaluations", "12", "--db", db, "--results",
                  str(tmp / "results"), "--no-export", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    return tmp, db, json.loads(run.stdout)


@pytest.fixture(scope="module")
def retrained(searched: tuple[Path, str, dict[str, Any]]) -> dict[str, Any]:
    """``amoeba retrain --top 1 --preset tiny-final --json`` of the search: its document."""
    tmp, db, _ = searched
    run = _amoeba(tmp, "retrain", "--db", db, "--experiment", "nb201-table", "--top", "1", "--preset", "tiny-final",
                  "--data-dir", str(tmp / "data"), "--results", str(tmp / "results"), "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    doc: dict[str, Any] = json.loads(run.stdout)
    return doc


def test_retrain_trains_the_best_on_the_whole_training_split_and_scores_the_test_split(
        searched: tuple[Path, str, dict[str, Any]], retrained: dict[str, Any]) -> None:
    tmp, db, search = searched
    doc = retrained
    assert doc["experiment"] == "nb201-table-final"
    [model] = doc["individuals"]
    best = search["best"]
    assert (model["source_seq"], model["fingerprint"]) == (best["proposal_seq"], best["fingerprint"])
    # Really trained on the learnable fixture (chance is 0.1), scored on its 100 test images.
    assert model["test_accuracy"] is not None and model["test_accuracy"] > 0.3
    assert round(model["test_accuracy"] * 100) == model["test_accuracy"] * 100
    import spaces
    from nets.build import model_stats

    genome = spaces.parse_genome(best["genome"])
    assert model["params"] == model_stats(genome, cells=1, filters=8, image_size=16).params
    # The same objective network prices it: the latency a search reported is the one the final model has.
    assert model["latency_ms"] == pytest.approx(best["latency_ms"], rel=1e-9)
    weights = read_artifact(Artifact(model["artifact"], model["sha256"], Path(model["artifact"], "weights.msgpack")
                                     .stat().st_size))
    assert weights and read_manifest(Artifact(model["artifact"], model["sha256"], len(weights)))[
        "training_config"]["split"] == "final"
    # A final experiment like any other: its status, and its artifacts kept and verified.
    status = json.loads(_amoeba(tmp, "status", "--db", db, "--experiment", "nb201-table-final", "--json").stdout)
    assert (status["state"], status["completed"], status["target"]) == ("done", 1, 1)
    listed = _amoeba(tmp, "artifacts", "--db", db, "--experiment", "nb201-table-final", "--verify", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["uri"], r["state"], r["verified"]) for r in json.loads(listed.stdout)] == [
        (model["artifact"], "kept", True)]
    # Beside its search in `compare`: the final model's test accuracy, size and latency; the search's on validation.
    compared = _amoeba(tmp, "compare", "--db", db, "nb201-table", "nb201-table-final", "--no-plot", "--json")
    assert compared.returncode == 0, compared.stderr
    rows = json.loads(compared.stdout)["experiments"]
    final, searched_row = rows["nb201-table-final"], rows["nb201-table"]
    assert (final["accuracy_split"], searched_row["accuracy_split"]) == ("test", "validation")
    assert final["best_accuracy"] == pytest.approx(model["test_accuracy"])
    assert (final["best_params"], final["best_mult_adds"]) == (model["params"], model["mult_adds"])
    assert final["best_params"] > 0 and final["best_mult_adds"] > 0
    assert final["best_latency_ms"] == pytest.approx(model["latency_ms"], abs=1e-4)


@pytest.mark.parametrize(("args", "message"), [
    (["--experiment", "nb201-table", "--top", "1"], "no default final-training preset; pass --preset"),
    (["--experiment", "nb201-table", "--top", "0", "--preset", "tiny-final"], "--top must be between 1 and 100"),
    (["--experiment", "nope", "--preset", "tiny-final"], "no experiment named 'nope'"),
    (["--experiment", "nb201-table", "--preset", "no-such-preset"], "unknown training preset"),
    (["--genome", "/nonexistent.json", "--preset", "tiny-final"], "cannot read the genome file"),
    (["--preset", "tiny-final"], "give --experiment NAME"),
])
def test_mistakes_are_one_line_and_create_nothing(searched: tuple[Path, str, dict[str, Any]], args: list[str],
                                                  message: str) -> None:
    tmp, db, _ = searched
    run = _amoeba(tmp, "retrain", "--db", db, *args, "--results", str(tmp / "results"))
    assert run.returncode != 0
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    names = [e["name"] for e in _experiments(tmp, db)]
    assert "nb201-table-final-2" not in names and all(not n.startswith("nope") for n in names)


def _experiments(tmp: Path, db: str) -> list[dict[str, Any]]:
    import sqlite3

    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return [{"name": n} for (n,) in conn.execute("SELECT name FROM experiments ORDER BY id")]


def test_with_a_server_retrain_only_creates_the_work(searched: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> None:
    tmp, _, search = searched
    db = f"sqlite:///{tmp_path / 'cluster.db'}"
    assert _amoeba(tmp, "migrate", "--db", db).returncode == 0
    server = subprocess.Popen([*AMOEBA, "server", "--db", db, "--port", "0", "--json", "--log-level", "WARNING",
                               "--artifacts", str(tmp_path / "store")], cwd=ROOT, env=_env(tmp),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        genome = tmp_path / "best.json"
        genome.write_text(json.dumps(search["best"]["genome"]))
        run = _amoeba(tmp, "retrain", "--server", f"127.0.0.1:{port}", "--genome", str(genome), "--preset",
                      "tiny-final", "--no-wait", "--json")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == {"experiment": "best-final"}
        import amoeba

        with amoeba.Client(f"127.0.0.1:{port}") as client:
            exp = client.experiment("best-final")
            assert (exp.state, exp.spec.algorithm, exp.spec.evaluations) == ("running", "fixed", 1)
            assert exp.spec.training == {"preset": "tiny-final", "split": "final"}
            assert exp.spec.artifacts == {"keep": "all"}
            # The work waits for the cluster's workers: one lease, the genome file's genome, weights asked for.
            trials = client.trials("best-final", "probe")
            trial = next(trials)
            assert json.loads(trial.genome_json) == search["best"]["genome"]
            assert trial.artifact_uri.startswith(str(tmp_path / "store" / "best-final"))
            assert trial.lease.mutation == "final training of best.json"
            trials.close()  # unsettled: handed back for the cluster's workers
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_final_model_exports_to_int8_for_the_edge_tpu(searched: tuple[Path, str, dict[str, Any]],
                                                         retrained: dict[str, Any]) -> None:
    pytest.importorskip("tensorflow")
    tmp, db, _ = searched
    out = tmp / "final.tflite"
    run = _amoeba(tmp, "export", "--db", db, "--experiment", retrained["experiment"], "--best", "--format",
                  "tflite-int8", "--out", str(out), "--data-dir", str(tmp / "data"), "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(run.stdout)
    assert doc["out"] == str(out) and doc["bytes"] == out.stat().st_size > 0
    assert doc["artifact"] == retrained["individuals"][0]["artifact"]
    # Every operator maps to the Edge TPU, and quantization costs at most 2 points of test accuracy.
    assert doc["ops_total"] == doc["ops_mapped"] > 0 and doc["unmapped"] == [] and doc["all_quantized"]
    assert abs(doc["float_accuracy"] - doc["int8_accuracy"]) <= 0.02
    assert doc["float_accuracy"] == pytest.approx(retrained["individuals"][0]["test_accuracy"], abs=0.02)
    # Any int8 file is priced by the simulator from the flatbuffer itself: the same figure the export printed.
    priced = _amoeba(tmp, "latency", "--tflite", str(out), "--json")
    assert priced.returncode == 0, priced.stderr
    assert json.loads(priced.stdout)["latency_ms"] == pytest.approx(doc["latency_ms"], rel=1e-3)
    # Weights that are not kept are one line, naming the way out.
    missing = _amoeba(tmp, "export", "--db", db, "--experiment", "nb201-table", "--best", "--out", str(tmp / "x.tflite"))
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "cannot be exported" in missing.stderr and "amoeba retrain" in missing.stderr
