"""A user evaluator for ``amoeba up/worker --evaluator my_evaluator:evaluate``: it receives an ``amoeba.Trial``
and returns its metrics. Here the "training" is a look-up in the NAS-Bench-201 table that ships with
Amoeba; put your own training code (PyTorch, JAX, anything) in its place."""

from __future__ import annotations

import amoeba
from tables.nb201 import load_table

TABLE = load_table()


def evaluate(trial: amoeba.Trial) -> dict[str, float]:
    # trial.genome is the genome object (trial.genome_json its canonical JSON), trial.seed the seed to
    # train with, trial.training the experiment's training settings.
    accuracy = TABLE.get(trial.genome, "c10v_valid_acc_12ep") / 100.0
    return {"accuracy": accuracy, "train_seconds": TABLE.get(trial.genome, "est_cost_12ep_sec")}
