"""Pairwise tournaments (Large-Scale Evolution, Real et al. 2017): the worse of two dies, the better reproduces.

When a worker asks for work, two distinct members are drawn uniformly from the population (with the
proposal's RNG only); the worse one is removed right then (the orchestrator logs it as a ``killed``
event; replay re-derives it, because the kill is part of ``propose``'s returned state) and the better
one is the parent of the child proposed. Ties go to the first drawn. A completed child joins the
population. The state is the population alone, in completion order, so a restarted server restores it
from the stored population (killed members are no longer flagged ``in_population``).

- **Initial population**: proposals 0..P-1 are copies of the space's trivial seed (``codec.seed()``, the
  paper's 1,000 identical seeds; a random genome each for spaces without one, or with
  ``initial: random``); each copy trains with its own seed (the training seed of proposal k).
- **Floor** (``min_population``, default P // 2, at least 1): a tournament kills only while the population
  is above it; at or below the floor the better of the two is copied and mutated and nobody dies. With a
  single member, it is the parent; with none (every worker asked before any seed finished), another seed
  copy is proposed. Because proposals are serialized per experiment (one transaction each) and a killed
  member leaves the state at once, a member is never drawn again, so never killed twice, however many
  workers pick at the same time; and as each proposal kills at most one, the population never drops below
  the floor. In steady state it hovers near P minus the number of children in flight (failed children
  never join, so the floor is what bounds the shrinkage).
- ``sample_size`` is not used (a tournament is always a pair); ``pareto`` selection is refused (a
  tournament compares one fitness).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from evolution.algorithms import AlgorithmContext, AlgorithmError, Member, Proposal
from genome import Genome, SearchSpace
from mutations import Mutation

Population = tuple[Member, ...]
INITIAL = ("seed", "random")


@runtime_checkable
class HasSeed(Protocol):
    """A space codec that offers a trivial seed genome (``genome.lse.LSESpace``)."""

    def seed(self) -> Genome: ...


@dataclass(frozen=True, slots=True)
class PairwiseTournament:
    """The Large-Scale Evolution selection rule as an ``evolution.Algorithm`` (see the module docstring)."""

    space: SearchSpace[Any]
    mutation: Mutation
    population_size: int
    min_population: int
    from_seed: bool
    name: str = "pairwise"

    def initial(self) -> Population:
        return ()

    def observe(self, state: Population, member: Member) -> Population:
        return (*state, member)

    def _first(self, seq: int, rng: random.Random) -> Proposal:
        if self.from_seed:
            assert isinstance(self.space, HasSeed)
            return Proposal(seq, self.space.seed(), None, "seed")
        return Proposal(seq, self.space.sample(rng), None, "random")

    def propose(self, state: Population, seq: int, rng: random.Random) -> tuple[Proposal, Population]:
        if seq < self.population_size or not state:
            return self._first(seq, rng), state
        survivors: Population = state
        if len(state) == 1:
            parent = state[0]
        else:
            i, j = rng.sample(range(len(state)), 2)
            a, b = state[i], state[j]
            parent, loser = (a, j) if a.fitness >= b.fitness else (b, i)
            if len(state) > self.min_population:
                survivors = state[:loser] + state[loser + 1:]
        child = self.mutation(parent.genome, rng)
        return Proposal(seq, child.genome, parent.seq, child.description), survivors

    def population(self, state: Population) -> Population:
        return state

    def restore(self, members: Sequence[Member]) -> Population:
        return tuple(members)


def pairwise(context: AlgorithmContext) -> PairwiseTournament:
    """Build the ``pairwise`` algorithm: options ``min_population`` (1..P, default P // 2) and ``initial``
    (``seed``: copies of the space's trivial seed, the default where it has one; ``random``)."""
    context.check_options(("min_population", "initial"))
    if context.selection != "best":
        raise AlgorithmError("pairwise tournaments compare one fitness; use an objective without pareto selection")
    p = context.population_size
    floor = context.option("min_population", max(1, p // 2), 1, p)
    if floor != int(floor):
        raise AlgorithmError(f"algorithm option min_population must be an integer, got {floor:g}")
    has_seed = isinstance(context.space, HasSeed)
    initial = context.choice("initial", "seed" if has_seed else "random", INITIAL)
    if initial == "seed" and not has_seed:
        raise AlgorithmError(f"space {context.space.name!r} has no trivial seed; use initial: random")
    return PairwiseTournament(context.space, context.mutation, p, int(floor), initial == "seed")
