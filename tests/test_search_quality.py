"""benchmarks/search_quality.py at a toy size: every method runs through its ask/tell interface and the document
has its schema; Amoeba's figures equal ``amoeba bench``'s for the same seeds. Skipped where the ``bench`` extra
(Syne Tune, Optuna) is not installed; not part of the 500-run measurement, which is run by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "search_quality.py"


def _load():
    spec = importlib.util.spec_from_file_location("_bench_search_quality", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_at_a_toy_size(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("syne_tune.optimizer.schedulers.searchers.regularized_evolution")
    bench = _load()
    assert bench.main(["--runs", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    from evolution import algorithm_names

    expected = {f"amoeba:{n}" for n in algorithm_names()} | set(bench.PEERS)
    assert set(doc["methods"]) | set(doc["skipped"]) == expected
    assert "amoeba:fixed" in doc["skipped"]  # a list of genomes to train, not a search
    for method, row in doc["methods"].items():
        assert set(row) == {"mean", "std", "runs", "mean_evaluations", "overhead_us", "seconds"}, method
        assert row["runs"] == 2 and 85 < row["mean"] < 95 and 60 < row["mean_evaluations"] < 140
        assert row["overhead_us"] > 0
    assert doc["protocol"]["budget_seconds"] == 12000.0 and doc["protocol"]["population"] == 10
    assert doc["protocol"]["optuna_tpe_multivariate"] is True
    # Amoeba's ask/tell loop is run_search's: the same figures as `amoeba bench` for the same seeds.
    import spaces
    from evolution.benchmark import compare

    protocol = spaces.get("nb201").load_table()
    data = protocol.load(None)
    space = spaces.get("nb201")
    ours = compare(["aging", "rl"], space.codec, space.build_mutation(), data.column(protocol.fitness_column),
                   data.column(protocol.report_column), 2, 0, 10, 3, cost=data.column(protocol.cost_column),
                   budget_seconds=12000.0)
    for name, summary in ours.items():
        assert doc["methods"][f"amoeba:{name}"]["mean"] == round(summary.mean, 4)
        assert doc["methods"][f"amoeba:{name}"]["mean_evaluations"] == round(summary.mean_evaluations, 2)


def test_syne_tune_runs_are_reproducible_from_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("syne_tune.optimizer.schedulers.searchers.regularized_evolution")
    bench = _load()
    docs = []
    for _ in range(2):
        assert bench.main(["--runs", "2", "--json", "--methods", "syne-tune:rea,syne-tune:random"]) == 0
        docs.append(json.loads(capsys.readouterr().out)["methods"])
    for doc in docs:
        for row in doc.values():
            row.pop("overhead_us")
            row.pop("seconds")
    assert docs[0] == docs[1]
