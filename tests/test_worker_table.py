"""TableEvaluator: tabular look-ups as metrics (the table found through the space registry), configurable
columns, seeded sleep that a stop interrupts; the evaluator registry."""

from __future__ import annotations

import csv
import random
import threading
import time
from pathlib import Path

import pytest

import spaces
from domain import Metrics
from tables.nb201 import NB201_BENCHMARK, default_table_path, load_table
from tests.builders import trial
from worker.evaluator import EvaluationCancelled, EvaluationFailed
from worker.evaluators import UnknownEvaluator, build_evaluator, evaluator_names
from worker.table import TableEvaluator, parse_sleep
from worker.trial import Trial

pytestmark = pytest.mark.unit

GENOME = spaces.get("nb201").sample(random.Random(3))


def item(training: dict | None = None, space: str = "nb201", genome: dict | None = None) -> Trial:
    return trial(genome if genome is not None else GENOME.to_json(), space=space, seed=5, training=training)


def test_accuracy_is_the_table_column_over_100_and_cost_is_train_seconds() -> None:
    table = load_table()
    metrics = TableEvaluator().evaluate(item(), threading.Event())
    assert isinstance(metrics, Metrics)
    assert metrics.accuracy == pytest.approx(table.get(GENOME, "c10v_valid_acc_12ep") / 100)
    assert metrics.train_seconds == pytest.approx(table.get(GENOME, "est_cost_12ep_sec"))
    assert metrics.train_seconds > 0
    # The table says nothing about latency: the orchestrator priced it at proposal.
    assert metrics.latency_ms is None


def test_the_table_and_default_columns_come_from_the_space_registry() -> None:
    benchmark, table = TableEvaluator().table("nb201")
    assert benchmark is spaces.get("nb201").load_table() is NB201_BENCHMARK
    assert table is load_table()
    assert (benchmark.fitness_column, benchmark.cost_column) == ("c10v_valid_acc_12ep", "est_cost_12ep_sec")


def test_a_table_file_overrides_the_shipped_one(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    with default_table_path().open(newline="") as fh, out.open("w", newline="") as oh:
        writer = csv.DictWriter(oh, fieldnames=["arch_str", "c10v_valid_acc_12ep", "est_cost_12ep_sec"])
        writer.writeheader()
        for row in csv.DictReader(fh):
            writer.writerow({"arch_str": row["arch_str"], "c10v_valid_acc_12ep": 42.0, "est_cost_12ep_sec": 7.0})
    metrics = build_evaluator("table", table=str(out)).evaluate(item(), threading.Event())
    assert (metrics.accuracy, metrics.train_seconds) == (pytest.approx(0.42), 7.0)
    assert TableEvaluator(out).evaluate(item(), threading.Event()).accuracy == pytest.approx(0.42)


def test_columns_come_from_training_settings() -> None:
    table = load_table()
    training = {"table": {"column": "c10_test_acc_200ep", "cost_column": "c10v_train_sec_per_epoch"}}
    metrics = TableEvaluator().evaluate(item(training), threading.Event())
    assert metrics.accuracy == pytest.approx(table.get(GENOME, "c10_test_acc_200ep") / 100)
    assert metrics.train_seconds == pytest.approx(table.get(GENOME, "c10v_train_sec_per_epoch"))


@pytest.mark.parametrize(
    ("work", "message"),
    [
        # NASNet has no tabular benchmark in the registry.
        (item(space="nasnet"), "cannot evaluate nasnet genomes: space 'nasnet' has no tabular benchmark"),
        (item(space="darts"), "cannot evaluate darts genomes: unknown search space 'darts'"),
        (item(genome={"space": "nb201", "edges": ["bogus"] * 6}), "bad genome"),
        (item({"table": {"column": "no_such_column"}}), "no column"),
        (item({"table": {"colum": "typo"}}), "unknown keys"),
        (item({"table": "c10"}), "must be an object"),
    ],
)
def test_what_the_table_cannot_answer_is_an_evaluation_failure(work: Trial, message: str) -> None:
    with pytest.raises(EvaluationFailed, match=message):
        TableEvaluator().evaluate(work, threading.Event())


def test_sleep_is_seeded_and_a_stop_cancels_it() -> None:
    evaluator = TableEvaluator(sleep_s=(0.05, 0.1))
    started = time.monotonic()
    evaluator.evaluate(item(), threading.Event())
    assert 0.05 <= time.monotonic() - started < 2
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(EvaluationCancelled):
        evaluator.evaluate(item({"table": {"sleep_s": 30}}), stop)
    assert time.monotonic() - started < 5


def test_parse_sleep() -> None:
    assert parse_sleep(2) == (2.0, 2.0)
    assert parse_sleep([0.5, 1]) == (0.5, 1.0)
    for bad in ([2, 1], -1, "x", [1], float("inf"), True):
        with pytest.raises(ValueError):
            parse_sleep(bad)


def test_registry() -> None:
    assert build_evaluator("table").name == "table"
    assert evaluator_names()[:2] == ("table", "train")
    with pytest.raises(UnknownEvaluator, match="expected one of table, train") as raised:
        build_evaluator("magic")
    assert "'magic'" in str(raised.value) and "MODULE:FUNCTION" in str(raised.value)
    with pytest.raises(UnknownEvaluator, match="cannot import evaluator module"):
        build_evaluator("no_such_module_xyz:evaluate")
    with pytest.raises(UnknownEvaluator, match="has no function 'nope'"):
        build_evaluator("json:nope")
