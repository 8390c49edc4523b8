"""The NAS-Bench-201 mutation: replace the op of one edge with a different op."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genome import NB201_OPS, Genome, NB201Genome
from genome.nb201 import NB201_EDGES
from mutations.base import Mutated, Mutation, MutationError


@dataclass(frozen=True, slots=True)
class EdgeOpMutation:
    """Pick one of the 6 edges uniformly and give it one of the 4 other ops."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        if not isinstance(genome, NB201Genome):
            raise MutationError(f"edge_op applies to nb201 genomes, not {genome.space}")
        edge = rng.randrange(len(NB201_EDGES))
        current = genome.ops[edge]
        new = rng.choice([op for op in NB201_OPS if op != current])
        ops = (*genome.ops[:edge], new, *genome.ops[edge + 1:])
        dst, src = NB201_EDGES[edge]
        return Mutated(NB201Genome(ops), f"edge_op {src}->{dst}: {current}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "edge_op"}


#: The JSON leaf types of the NAS-Bench-201 space.
NB201_MUTATIONS: dict[str, Callable[..., Mutation]] = {"edge_op": EdgeOpMutation}
#: NAS-Bench-201's REA mutates exactly one edge op every time.
NB201_DEFAULT_SPEC: dict[str, Any] = {"type": "edge_op"}
