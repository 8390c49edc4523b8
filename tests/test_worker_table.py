"""TableEvaluator: NB201 look-ups as metrics, configurable columns, seeded sleep that a stop interrupts."""

from __future__ import annotations

import threading
import time

import pytest

import spaces
from tables.nb201 import load_table
from worker.evaluator import EvaluationCancelled, EvaluationFailed, WorkItem
from worker.evaluators import UnknownEvaluator, build_evaluator
from worker.table import TableEvaluator, parse_sleep

GENOME = spaces.get("nb201").sample(__import__("random").Random(3))


def item(training: dict | None = None, space: str = "nb201", genome: dict | None = None) -> WorkItem:
    return WorkItem("e", 1, 0, space, genome if genome is not None else GENOME.to_json(), seed=5, training=training or {})


def test_accuracy_is_the_table_column_over_100_and_cost_is_train_seconds() -> None:
    table = load_table()
    metrics = TableEvaluator().evaluate(item(), threading.Event())
    assert metrics.accuracy == pytest.approx(table.get(GENOME, "c10v_valid_acc_12ep") / 100)
    assert metrics.train_seconds == pytest.approx(table.get(GENOME, "est_cost_12ep_sec"))
    assert metrics.train_seconds > 0


def test_columns_come_from_training_settings() -> None:
    table = load_table()
    training = {"table": {"column": "c10_test_acc_200ep", "cost_column": "c10v_train_sec_per_epoch"}}
    metrics = TableEvaluator().evaluate(item(training), threading.Event())
    assert metrics.accuracy == pytest.approx(table.get(GENOME, "c10_test_acc_200ep") / 100)
    assert metrics.train_seconds == pytest.approx(table.get(GENOME, "c10v_train_sec_per_epoch"))


@pytest.mark.parametrize(
    ("work", "message"),
    [
        (item(space="nasnet"), "only knows nb201"),
        (item(genome={"space": "nb201", "edges": ["bogus"] * 6}), "bad genome"),
        (item({"table": {"column": "no_such_column"}}), "no column"),
        (item({"table": {"colum": "typo"}}), "unknown keys"),
        (item({"table": "c10"}), "must be an object"),
    ],
)
def test_what_the_table_cannot_answer_is_an_evaluation_failure(work: WorkItem, message: str) -> None:
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
    with pytest.raises(UnknownEvaluator, match="expected one of table, train"):
        build_evaluator("magic")
