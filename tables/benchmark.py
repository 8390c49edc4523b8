"""What a tabular benchmark offers the table evaluator and ``amoeba bench``: its table and its protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TableBenchmark:
    """A table of precomputed results for every genome of one space, and the search protocol published
    with it (the columns searched, reported and charged as simulated time, the budget, P and S).

    ``load(path)`` reads a table (the shipped one for None) with ``get(genome, column)`` and
    ``column(name) -> {genome: value}``; ``size`` is the number of genomes in the space, so a partial
    table can be refused before a search proposes a genome it cannot answer for.
    """

    name: str
    load: Callable[[str | Path | None], Any]
    size: int
    fitness_column: str
    report_column: str
    cost_column: str
    budget_seconds: float
    population: int
    sample: int
    #: Table accuracies times this are fractions in [0, 1] (NAS-Bench-201 stores percentages).
    accuracy_scale: float = 0.01
