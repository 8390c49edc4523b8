"""Drive a search from Python: create an experiment, then lease trials and report them (ask/tell).

Start a server first, for example ``amoeba server --db sqlite:///demo.db --token secret &``; then
``AMOEBA_TOKEN=secret python examples/client_loop.py``.
"""

from __future__ import annotations

import os

import amoeba
from tables.nb201 import load_table

TABLE = load_table()


def my_train(trial: amoeba.Trial) -> float:
    return TABLE.get(trial.genome, "c10v_valid_acc_12ep") / 100.0  # your training code goes here


with amoeba.Client(os.environ.get("AMOEBA_SERVER", "127.0.0.1:50051"), token=os.environ.get("AMOEBA_TOKEN")) as client:
    name = client.create_experiment("nb201-table", name="client-demo")  # a shipped config, a file, or a dict
    for trial in client.trials(name, worker_id="my-laptop"):  # leases until the experiment is done
        trial.report(accuracy=my_train(trial))  # heartbeats run in the background; or trial.fail("reason")
    print(client.status(name)["best"])
