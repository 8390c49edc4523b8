"""The mutation protocol: a frozen value called with a genome and an RNG, returning a new genome."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from domain.errors import AmoebaError
from genome import Genome


class MutationError(AmoebaError, ValueError):
    """A mutation spec is malformed, or an operator was applied to a genome of the wrong space."""


@dataclass(frozen=True, slots=True)
class Mutated:
    """The result of a mutation: the child genome and a short description of what changed."""

    genome: Genome
    description: str


class Mutation(Protocol):
    """``op(genome, rng) -> Mutated``. Operators hold no RNG and never modify their input."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated: ...

    def to_spec(self) -> dict[str, Any]: ...
