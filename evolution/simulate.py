"""A sequential, in-process search loop over a fitness function (for tabular benchmarks and tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evolution.algorithms import EvolutionConfig, Member, Proposal
from evolution.rng import rng_for
from genome import Genome
from mutations import Mutation


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Every proposal in order, the fitness of each, and the best member by fitness."""

    proposals: tuple[Proposal, ...]
    fitnesses: tuple[float, ...]
    best: Member
    #: Simulated time spent after each evaluation (the running sum of ``cost``), when a cost was given.
    elapsed: tuple[float, ...] = ()


def run_search(
    config: EvolutionConfig,
    space: Any,
    mutation: Mutation,
    fitness: Callable[[Genome], float],
    max_evaluations: int | None = None,
    cost: Callable[[Genome], float] | None = None,
    budget: float | None = None,
    noise_std: float = 0.0,
) -> SearchResult:
    """Propose, evaluate and observe one child at a time until the evaluation count or cost budget is spent.

    With a cost budget, the evaluation that would exceed the budget is not counted (as in NAS-Bench-201's
    simulated search time). With ``noise_std`` > 0 each evaluation's fitness is ``fitness(genome)`` plus
    Gaussian noise drawn from ``rng_for(seed, k, "noise")`` (training noise: the same genome evaluated
    twice gets two values); the algorithm and ``best`` see the noisy values.
    """
    if max_evaluations is None and budget is None:
        raise ValueError("give max_evaluations or a cost budget")
    algorithm = config.build(space, mutation)
    state = algorithm.initial()
    proposals: list[Proposal] = []
    fitnesses: list[float] = []
    elapsed: list[float] = []
    best: Member | None = None
    spent = 0.0
    seq = 0
    while max_evaluations is None or seq < max_evaluations:
        proposal, state = algorithm.propose(state, seq, rng_for(config.seed, seq))
        if cost is not None:
            spent += cost(proposal.genome)
            if budget is not None and spent > budget and seq > 0:
                break
        value = fitness(proposal.genome)
        if noise_std > 0:
            value += rng_for(config.seed, seq, stream="noise").gauss(0.0, noise_std)
        member = Member(seq, proposal.genome, value, value)
        state = algorithm.observe(state, member)
        proposals.append(proposal)
        fitnesses.append(value)
        if cost is not None:
            elapsed.append(spent)
        if best is None or value > best.fitness:
            best = member
        seq += 1
    assert best is not None
    return SearchResult(tuple(proposals), tuple(fitnesses), best, tuple(elapsed))
