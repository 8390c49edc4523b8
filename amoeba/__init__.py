"""Amoeba's Python face: a client for experiments and trials, and the ``Trial`` every evaluator receives.

    import amoeba
    with amoeba.Client("127.0.0.1:50051", token="...") as client:
        client.create_experiment("configs/tiny.yaml")
        for trial in client.trials("tiny", worker_id="my-laptop"):
            trial.report(accuracy=my_train(trial.genome_json, seed=trial.seed))
"""

from amoeba.client import Client
from domain.errors import (
    AlreadyExists,
    AmoebaError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from worker.trial import Trial

__all__ = [
    "AlreadyExists",
    "AmoebaError",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "Trial",
    "Unauthenticated",
    "Unavailable",
]
