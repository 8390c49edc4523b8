"""Load a NAS-Bench-201-shaped CSV table (must have ``arch_str``) into per-genome metric columns."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from genome import GenomeError, NB201Genome
from genome.nb201 import NB201_EDGES, NB201_OPS, parse_arch_str
from tables.benchmark import TableBenchmark, TableError

DEFAULT_TABLE = "nb201_cifar10.csv"




@dataclass(frozen=True, slots=True)
class Table:
    """Columns of floats keyed by genome; ``column(name)`` checks that the column exists."""

    path: str
    columns: tuple[str, ...]
    rows: dict[NB201Genome, dict[str, float]]

    def column(self, name: str) -> dict[NB201Genome, float]:
        if name not in self.columns:
            raise TableError(f"table {self.path} has no column {name!r}; columns: {', '.join(self.columns)}")
        return {g: row[name] for g, row in self.rows.items()}

    def get(self, genome: NB201Genome, name: str) -> float:
        if name not in self.columns:
            raise TableError(f"table {self.path} has no column {name!r}")
        try:
            return self.rows[genome][name]
        except KeyError:
            raise TableError(f"genome {genome.to_arch_str()} is not in table {self.path}") from None


def default_table_path() -> Path:
    return Path(str(resources.files("tables").joinpath(DEFAULT_TABLE)))


_CACHE: dict[str, Table] = {}


def _read_rows(p: Path, reader: csv.DictReader[str], rows: dict[NB201Genome, dict[str, float]]) -> tuple[str, ...]:
    header = tuple(reader.fieldnames or ())
    if "arch_str" not in header:
        raise TableError(f"table {p} must have an 'arch_str' column")
    numeric = tuple(c for c in header if c != "arch_str")
    for lineno, raw in enumerate(reader, start=2):
        try:
            genome = parse_arch_str(raw["arch_str"])
        except GenomeError as exc:
            raise TableError(f"{p}:{lineno}: {exc}") from None
        values: dict[str, float] = {}
        for c in numeric:
            try:
                values[c] = float(raw[c])
            except (TypeError, ValueError):
                values[c] = math.nan
        rows[genome] = values
    return numeric


def load_table(path: str | Path | None = None) -> Table:
    """Read (and cache) a table; numeric columns become floats, ``arch_str`` becomes the genome key."""
    p = Path(path) if path is not None else default_table_path()
    key = str(p.resolve()) if p.exists() else str(p)
    if key in _CACHE:
        return _CACHE[key]
    if not p.is_file():
        raise TableError(f"table file not found: {p}")
    rows: dict[NB201Genome, dict[str, float]] = {}
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            numeric = _read_rows(p, csv.DictReader(fh), rows)
    except UnicodeDecodeError:
        raise TableError(f"table {p} is not a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise TableError(f"table {p} is not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise TableError(f"cannot read table {p}: {exc.strerror or exc}") from None
    table = Table(str(p), numeric, rows)
    _CACHE[key] = table
    return table


#: The NAS-Bench-201 search protocol of Dong & Yang (2020), section 6: fitness = 12-epoch validation
#: accuracy on cifar10-valid, simulated time = the sum of 12-epoch training costs, budget 12,000 s,
#: REA with P = 10, S = 3, reported figure = the 200-epoch CIFAR-10 test accuracy of the best genome.
NB201_BENCHMARK = TableBenchmark(
    name="nb201",
    load=load_table,
    size=len(NB201_OPS) ** len(NB201_EDGES),
    fitness_column="c10v_valid_acc_12ep",
    report_column="c10_test_acc_200ep",
    cost_column="est_cost_12ep_sec",
    budget_seconds=12000.0,
    population=10,
    sample=3,
)
