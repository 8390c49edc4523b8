"""The search algorithms as two pure functions: ``propose`` a child, ``observe`` a completed member.

Asynchronous, as in Real et al. (2019): a child is proposed when a worker asks for work. Until P members
have completed, proposals are random genomes; afterwards S members are drawn with replacement from the
population, the best is the parent, and a mutation of it is the child. When a member completes it joins
the population and, past P members, the oldest (aging) or the worst (non-aging) leaves. Random search
always proposes random genomes. All randomness of proposal k comes from ``rng_for(seed, k)``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evolution.objectives import pareto_front_indices
from evolution.rng import rng_for
from genome import Genome
from mutations import Mutation

Algorithm = Literal["aging", "non-aging", "random"]
ALGORITHMS: tuple[str, ...] = ("aging", "non-aging", "random")
Selection = Literal["best", "pareto"]


@dataclass(frozen=True, slots=True)
class EvolutionConfig:
    """P, S, the algorithm, the parent selection rule and the experiment seed."""

    population_size: int = 100
    sample_size: int = 25
    algorithm: Algorithm = "aging"
    seed: int = 0
    selection: Selection = "best"

    def __post_init__(self) -> None:
        if self.population_size < 1:
            raise ValueError(f"population_size must be >= 1, got {self.population_size}")
        if self.sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {self.sample_size}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.selection not in ("best", "pareto"):
            raise ValueError(f"selection must be 'best' or 'pareto', got {self.selection!r}")


@dataclass(frozen=True, slots=True)
class Member:
    """A completed individual: its proposal number, genome, scalar fitness and raw objectives."""

    seq: int
    genome: Genome
    fitness: float
    accuracy: float = 0.0
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """A child to evaluate: proposal number, genome, parent's proposal number and how it was made."""

    seq: int
    genome: Genome
    parent_seq: int | None
    mutation: str


def _select_parent(config: EvolutionConfig, population: Sequence[Member], rng: random.Random) -> Member:
    sample = [population[rng.randrange(len(population))] for _ in range(config.sample_size)]
    if config.selection == "best":
        # max() keeps the first of equal candidates, so ties break by draw order, deterministically.
        return max(sample, key=lambda m: m.fitness)
    distinct = sorted({m.seq: m for m in sample}.values(), key=lambda m: m.seq)
    front = [distinct[i] for i in pareto_front_indices([(m.accuracy, m.latency_ms) for m in distinct])]
    return front[rng.randrange(len(front))]


def propose(
    config: EvolutionConfig,
    space: Any,
    mutation: Mutation,
    population: Sequence[Member],
    seq: int,
) -> Proposal:
    """The child of proposal ``seq`` given the current population (oldest first)."""
    rng = rng_for(config.seed, seq)
    if config.algorithm == "random" or len(population) < config.population_size:
        return Proposal(seq, space.sample(rng), None, "random")
    parent = _select_parent(config, population, rng)
    child = mutation(parent.genome, rng)
    return Proposal(seq, child.genome, parent.seq, child.description)


def observe(
    config: EvolutionConfig, population: Sequence[Member], member: Member
) -> tuple[tuple[Member, ...], Member | None]:
    """Add a completed member; return the new population (oldest first) and the member that left, if any."""
    grown = (*population, member)
    if len(grown) <= config.population_size:
        return grown, None
    if config.algorithm != "non-aging":
        # Aging evolution (and random search, whose population only feeds the status view): oldest out.
        return grown[1:], grown[0]
    # Non-aging: the worst dies; among equals, the oldest.
    worst = min(range(len(grown)), key=lambda i: (grown[i].fitness, i))
    return grown[:worst] + grown[worst + 1 :], grown[worst]
