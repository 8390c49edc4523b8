"""Combinators that compose mutation operators: identity, weighted choice, chain, until-changed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from genome import Genome
from mutations.base import Mutated, Mutation, MutationError


@dataclass(frozen=True, slots=True)
class Identity:
    """No change (the paper's identity mutation, probability 0.05 by default)."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        return Mutated(genome, "identity")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "identity"}


@dataclass(frozen=True, slots=True)
class Choice:
    """Apply exactly one of ``options``, drawn with probability proportional to its weight."""

    options: tuple[tuple[float, Mutation], ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise MutationError("choice needs at least one option")
        if any(not (w >= 0.0) or w == float("inf") for w, _ in self.options):
            raise MutationError("choice weights must be finite and non-negative")
        if sum(w for w, _ in self.options) <= 0.0:
            raise MutationError("choice weights must not all be zero")

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        total = sum(w for w, _ in self.options)
        x = rng.random() * total
        for weight, op in self.options:
            if x < weight:
                return op(genome, rng)
            x -= weight
        return self.options[-1][1](genome, rng)  # float rounding at the upper edge

    def to_spec(self) -> dict[str, Any]:
        return {"type": "choice", "options": [{"weight": w, "op": op.to_spec()} for w, op in self.options]}


@dataclass(frozen=True, slots=True)
class Chain:
    """Apply each operator in turn to the previous one's result."""

    steps: tuple[Mutation, ...]

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        descriptions = []
        for step in self.steps:
            result = step(genome, rng)
            genome = result.genome
            descriptions.append(result.description)
        return Mutated(genome, "; ".join(descriptions) or "identity")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "chain", "steps": [s.to_spec() for s in self.steps]}


@dataclass(frozen=True, slots=True)
class UntilChanged:
    """Re-apply ``op`` until the genome differs from its input (at most ``max_tries`` times)."""

    op: Mutation
    max_tries: int = 100

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        result = Mutated(genome, "identity")
        for _ in range(self.max_tries):
            result = self.op(genome, rng)
            if result.genome != genome:
                return result
        return result

    def to_spec(self) -> dict[str, Any]:
        return {"type": "until_changed", "op": self.op.to_spec(), "max_tries": self.max_tries}
