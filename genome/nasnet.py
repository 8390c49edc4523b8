"""The NASNet/AmoebaNet cell search space: 8 ops, a normal and a reduction cell of 5 combinations each."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genome.base import Decision, GenomeError, check_decisions, fingerprint_of, shown

#: The op list of the paper, in the paper's order. Names are shared with the Flax op table and the
#: latency simulator (a test keeps the three in step).
NASNET_OPS: tuple[str, ...] = (
    "identity",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "avg_pool_3x3",
    "max_pool_3x3",
    "dil_sep_conv_3x3",
    "conv_1x7_7x1",
)

#: Short names for one-line summaries.
_ABBREV = {
    "identity": "id",
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "sep_conv_7x7": "sep7",
    "avg_pool_3x3": "avg3",
    "max_pool_3x3": "max3",
    "dil_sep_conv_3x3": "dil3",
    "conv_1x7_7x1": "1x7",
}

NUM_COMBINATIONS = 5
NUM_INPUTS = 2
NUM_STATES = NUM_INPUTS + NUM_COMBINATIONS  # hidden states 0..6
CELL_KINDS = ("normal", "reduction")


@dataclass(frozen=True, slots=True)
class Combination:
    """One pairwise combination: ``op(left_input) + op(right_input)`` creates a new hidden state."""

    left_input: int
    left_op: str
    right_input: int
    right_op: str

    def inputs(self) -> tuple[int, int]:
        return (self.left_input, self.right_input)

    def ops(self) -> tuple[str, str]:
        return (self.left_op, self.right_op)

    def to_json(self) -> list[list[Any]]:
        return [[self.left_input, self.left_op], [self.right_input, self.right_op]]


@dataclass(frozen=True, slots=True)
class Cell:
    """Five combinations; combination k creates hidden state 2 + k from two earlier states.

    ``extra_outputs`` holds states concatenated into the output although a combination consumes them:
    the reference code's stored ``used_hiddenstates`` mask differs from actual use for the published
    cells, and keeping the difference lets ``amoebanet-a``/``nasnet-a`` reproduce the published models.
    Sampled and mutated genomes never gain extras; mutations carry them over unchanged.
    """

    combinations: tuple[Combination, ...]
    extra_outputs: frozenset[int] = field(default_factory=frozenset)

    def consumed(self) -> frozenset[int]:
        return frozenset(i for c in self.combinations for i in c.inputs())

    def output_states(self) -> tuple[int, ...]:
        """States concatenated into the cell's output: generated states no combination consumed, plus extras."""
        consumed = self.consumed()
        unused = {s for s in range(NUM_INPUTS, NUM_STATES) if s not in consumed}
        return tuple(sorted(unused | set(self.extra_outputs)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"combinations": [c.to_json() for c in self.combinations]}
        if self.extra_outputs:
            data["extra_outputs"] = sorted(self.extra_outputs)
        return data

    def summary(self) -> str:
        return " ".join(
            f"{c.left_input}:{_ABBREV[c.left_op]}+{c.right_input}:{_ABBREV[c.right_op]}"
            for c in self.combinations
        )


@dataclass(frozen=True, slots=True)
class NASNetGenome:
    """A NASNet-space architecture: one normal and one reduction cell."""

    normal: Cell
    reduction: Cell

    @property
    def space(self) -> str:
        return "nasnet"

    def cell(self, kind: str) -> Cell:
        if kind == "normal":
            return self.normal
        if kind == "reduction":
            return self.reduction
        raise GenomeError(f"unknown cell kind {shown(kind)}; expected one of {CELL_KINDS}")

    def replace_cell(self, kind: str, cell: Cell) -> NASNetGenome:
        if kind == "normal":
            return NASNetGenome(cell, self.reduction)
        if kind == "reduction":
            return NASNetGenome(self.normal, cell)
        raise GenomeError(f"unknown cell kind {shown(kind)}; expected one of {CELL_KINDS}")

    def to_json(self) -> dict[str, Any]:
        return {"space": "nasnet", "normal": self.normal.to_json(), "reduction": self.reduction.to_json()}

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("nasnet", self.to_json())

    def summary(self) -> str:
        return f"N[{self.normal.summary()}] R[{self.reduction.summary()}]"


def _parse_op(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in NASNET_OPS:
        raise GenomeError(f"{where}: unknown op {shown(value)}; expected one of {', '.join(NASNET_OPS)}")
    return value


def _parse_input(value: Any, k: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenomeError(f"{where}: input must be an integer hidden-state index, got {shown(value)}")
    limit = NUM_INPUTS + k
    if not 0 <= value < limit:
        raise GenomeError(
            f"{where}: input {value} is not an earlier hidden state (combination {k} may read states 0..{limit - 1})"
        )
    return value


def _parse_cell(data: Any, kind: str) -> Cell:
    if not isinstance(data, dict):
        raise GenomeError(f"{kind} cell must be an object with 'combinations', got {type(data).__name__}")
    unknown = set(data) - {"combinations", "extra_outputs"}
    if unknown:
        raise GenomeError(f"{kind} cell has unknown keys: {', '.join(sorted(unknown))}")
    combos = data.get("combinations")
    if not isinstance(combos, list) or len(combos) != NUM_COMBINATIONS:
        got = len(combos) if isinstance(combos, list) else type(combos).__name__
        raise GenomeError(f"{kind} cell must have exactly {NUM_COMBINATIONS} combinations, got {got}")
    parsed = []
    for k, combo in enumerate(combos):
        where = f"{kind} cell, combination {k}"
        if not isinstance(combo, list) or len(combo) != 2:
            raise GenomeError(f"{where}: must be [[input, op], [input, op]]")
        sides = []
        for side_name, side in zip(("left", "right"), combo, strict=True):
            if not isinstance(side, list) or len(side) != 2:
                raise GenomeError(f"{where}, {side_name}: must be [input, op], got {shown(side)}")
            sides.append((_parse_input(side[0], k, f"{where}, {side_name}"), _parse_op(side[1], f"{where}, {side_name}")))
        parsed.append(Combination(sides[0][0], sides[0][1], sides[1][0], sides[1][1]))
    extras_raw = data.get("extra_outputs", [])
    if not isinstance(extras_raw, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < NUM_STATES for s in extras_raw
    ):
        raise GenomeError(f"{kind} cell: extra_outputs must be a list of state indices 0..{NUM_STATES - 1}")
    if len(set(extras_raw)) != len(extras_raw):
        raise GenomeError(f"{kind} cell: extra_outputs has duplicates")
    return Cell(tuple(parsed), frozenset(extras_raw))


def validate_cell(cell: Cell, kind: str) -> None:
    """Raise GenomeError when a Cell built in code (not from JSON) is malformed."""
    _parse_cell(cell.to_json(), kind)


class NASNetSpace:
    """Sampling and decoding of NASNet-space genomes."""

    name = "nasnet"

    def sample_cell(self, rng: random.Random) -> Cell:
        combos = []
        for k in range(NUM_COMBINATIONS):
            limit = NUM_INPUTS + k
            combos.append(
                Combination(
                    rng.randrange(limit), rng.choice(NASNET_OPS), rng.randrange(limit), rng.choice(NASNET_OPS)
                )
            )
        return Cell(tuple(combos))

    def sample(self, rng: random.Random) -> NASNetGenome:
        return NASNetGenome(self.sample_cell(rng), self.sample_cell(rng))

    def from_json(self, data: Any) -> NASNetGenome:
        if not isinstance(data, dict):
            raise GenomeError(f"a nasnet genome must be a JSON object, got {type(data).__name__}")
        if data.get("space", "nasnet") != "nasnet":
            raise GenomeError(f"genome is of space {shown(data.get('space'))}, not 'nasnet'")
        unknown = set(data) - {"space", "normal", "reduction"}
        if unknown:
            raise GenomeError(f"nasnet genome has unknown keys: {', '.join(sorted(unknown))}")
        for kind in CELL_KINDS:
            if kind not in data:
                raise GenomeError(f"nasnet genome is missing the {kind} cell")
        return NASNetGenome(_parse_cell(data["normal"], "normal"), _parse_cell(data["reduction"], "reduction"))

    # --- the decision view: per cell, per combination, (left input, left op, right input, right op) ----

    def decisions(self, genome: NASNetGenome) -> tuple[int, ...]:
        """20 choices per cell, normal then reduction; ``extra_outputs`` (a reference-code quirk) is not a choice."""
        out: list[int] = []
        for kind in CELL_KINDS:
            for c in genome.cell(kind).combinations:
                out += [c.left_input, NASNET_OPS.index(c.left_op), c.right_input, NASNET_OPS.index(c.right_op)]
        return tuple(out)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        i = len(prefix)
        if i >= 2 * NUM_COMBINATIONS * 4:
            return None
        k, slot = (i // 4) % NUM_COMBINATIONS, i % 4
        return Decision("input", NUM_INPUTS + k) if slot in (0, 2) else Decision("op", len(NASNET_OPS))

    def from_decisions(self, decisions: Sequence[int]) -> NASNetGenome:
        check_decisions(self, decisions)
        cells = []
        for c in range(2):
            combos = []
            for k in range(NUM_COMBINATIONS):
                a, b, x, y = decisions[(c * NUM_COMBINATIONS + k) * 4:(c * NUM_COMBINATIONS + k) * 4 + 4]
                combos.append(Combination(a, NASNET_OPS[b], x, NASNET_OPS[y]))
            cells.append(Cell(tuple(combos)))
        return NASNetGenome(cells[0], cells[1])
