"""Errors of the training package: bad data (recorded as a failed evaluation) and a dataset that is not there."""

from __future__ import annotations

from domain.errors import AmoebaError


class DataError(AmoebaError, ValueError):
    """The data on disk is unusable (corrupt archive, wrong shapes, labels out of range); the message says why."""


class DatasetUnavailable(DataError):
    """The dataset is neither on disk nor downloadable; the message says where to put the files.

    A worker cannot evaluate anything without its data, so the evaluator lets this error end the
    worker (one line on stderr) instead of recording every individual as failed.
    """
