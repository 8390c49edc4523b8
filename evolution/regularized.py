"""Aging (regularized) evolution, non-aging evolution and random search (Real et al. 2019, Algorithm 1).

Asynchronous, as in the paper: a child is proposed when a worker asks for work. Until P members have
completed, proposals are random genomes; afterwards S members are drawn with replacement from the
population, the best is the parent, and a mutation of it is the child. When a member completes it joins
the population and, past P members, the oldest (aging) or the worst (non-aging) leaves. Random search
always proposes random genomes. The state of all three is the population itself, oldest first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evolution.algorithms import AlgorithmContext, Member, Proposal, Selection
from evolution.objectives import pareto_front_indices
from genome import SearchSpace
from mutations import Mutation

Population = tuple[Member, ...]


def select_parent(population: Sequence[Member], sample_size: int, selection: Selection, rng: random.Random) -> Member:
    """Tournament selection: S draws with replacement; the fittest (ties: the first drawn), or a uniform
    pick from the sample's accuracy/latency front."""
    sample = [population[rng.randrange(len(population))] for _ in range(sample_size)]
    if selection == "best":
        # max() keeps the first of equal candidates, so ties break by draw order, deterministically.
        return max(sample, key=lambda m: m.fitness)
    distinct = sorted({m.seq: m for m in sample}.values(), key=lambda m: m.seq)
    front = [distinct[i] for i in pareto_front_indices([(m.accuracy, m.latency_ms) for m in distinct])]
    return front[rng.randrange(len(front))]


@dataclass(frozen=True, slots=True)
class RegularizedEvolution:
    """Tournament selection over the P most recent completions (``aging``) or the P best (not aging)."""

    space: SearchSpace[Any]
    mutation: Mutation
    population_size: int
    sample_size: int
    selection: Selection
    aging: bool = True

    @property
    def name(self) -> str:
        return "aging" if self.aging else "non-aging"

    def initial(self) -> Population:
        return ()

    def observe(self, state: Population, member: Member) -> Population:
        grown = (*state, member)
        if len(grown) <= self.population_size:
            return grown
        if self.aging:
            return grown[1:]
        # Non-aging: the worst dies; among equals, the oldest.
        worst = min(range(len(grown)), key=lambda i: (grown[i].fitness, i))
        return grown[:worst] + grown[worst + 1:]

    def propose(self, state: Population, seq: int, rng: random.Random) -> tuple[Proposal, Population]:
        if len(state) < self.population_size:
            return Proposal(seq, self.space.sample(rng), None, "random"), state
        parent = select_parent(state, self.sample_size, self.selection, rng)
        child = self.mutation(parent.genome, rng)
        return Proposal(seq, child.genome, parent.seq, child.description), state

    def population(self, state: Population) -> Population:
        return state

    def restore(self, members: Sequence[Member]) -> Population:
        return tuple(members)


@dataclass(frozen=True, slots=True)
class RandomSearch:
    """Random genomes only; the population (the P most recent completions) only feeds the status view."""

    space: SearchSpace[Any]
    population_size: int
    name: str = "random"

    def initial(self) -> Population:
        return ()

    def observe(self, state: Population, member: Member) -> Population:
        return (*state, member)[-self.population_size:]

    def propose(self, state: Population, seq: int, rng: random.Random) -> tuple[Proposal, Population]:
        return Proposal(seq, self.space.sample(rng), None, "random"), state

    def population(self, state: Population) -> Population:
        return state

    def restore(self, members: Sequence[Member]) -> Population:
        return tuple(members)


def aging(context: AlgorithmContext) -> RegularizedEvolution:
    context.check_options(())
    return RegularizedEvolution(context.space, context.mutation, context.population_size, context.sample_size,
                                context.selection, aging=True)


def non_aging(context: AlgorithmContext) -> RegularizedEvolution:
    context.check_options(())
    return RegularizedEvolution(context.space, context.mutation, context.population_size, context.sample_size,
                                context.selection, aging=False)


def random_search(context: AlgorithmContext) -> RandomSearch:
    context.check_options(())
    return RandomSearch(context.space, context.population_size)
