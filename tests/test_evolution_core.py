"""Aging evolution, non-aging evolution and random search as pure propose/observe steps; replay; golden run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import spaces
from evolution import (
    Completed,
    EvolutionConfig,
    Failed,
    Member,
    Proposed,
    build_objective,
    fold,
    observe,
    propose,
    rng_for,
    verify,
)
from evolution.objectives import ObjectiveError, pareto_front_indices
from evolution.simulate import run_search
from mutations import build_mutation, default_mutation_spec

NASNET = spaces.get("nasnet")
NB201 = spaces.get("nb201")
NASNET_MUT = build_mutation(default_mutation_spec("nasnet"), "nasnet")
NB201_MUT = build_mutation(default_mutation_spec("nb201"), "nb201")
GOLDEN = Path(__file__).parent / "golden" / "aging_nasnet_seed2019.json"


def fixed_fitness(genome) -> float:
    """A deterministic stand-in for accuracy: a pure function of the fingerprint."""
    return int(genome.fingerprint[:8], 16) / 2**32


def golden_run():
    config = EvolutionConfig(population_size=20, sample_size=5, algorithm="aging", seed=2019)
    return run_search(config, NASNET, NASNET_MUT, fixed_fitness, max_evaluations=200)


def test_golden_first_200_proposals() -> None:
    result = golden_run()
    got = [p.genome.fingerprint for p in result.proposals]
    expected = json.loads(GOLDEN.read_text())
    assert got == expected["fingerprints"]
    assert [p.parent_seq for p in result.proposals] == expected["parents"]


def test_random_phase_until_population_is_full_then_tournament() -> None:
    config = EvolutionConfig(population_size=5, sample_size=3, seed=1)
    population: tuple[Member, ...] = ()
    for k in range(5):
        p = propose(config, NASNET, NASNET_MUT, population, k)
        assert p.parent_seq is None and p.mutation == "random"
        # Proposals while others are still pending stay random: only *completed* members count.
    for k in range(5):
        population, _ = observe(config, population, Member(k, NASNET.sample(rng_for(9, k)), float(k)))
    child = propose(config, NASNET, NASNET_MUT, population, 5)
    assert child.parent_seq is not None and child.mutation != "random"


def test_tournament_picks_best_of_sample_with_replacement() -> None:
    config = EvolutionConfig(population_size=10, sample_size=10, seed=4)
    population = tuple(Member(k, NASNET.sample(rng_for(1, k)), float(k % 7)) for k in range(10))
    parents = [propose(config, NASNET, NASNET_MUT, population, 100 + k).parent_seq for k in range(2000)]
    # The best member (seq 6) wins whenever it is drawn: with replacement that is 1 - 0.9^10 = 0.651.
    assert abs(parents.count(6) / 2000 - (1 - 0.9**10)) < 0.04
    # The second best (seq 5) wins when 6 is not drawn but 5 is: 0.9^10 - 0.8^10 = 0.242.
    assert abs(parents.count(5) / 2000 - (0.9**10 - 0.8**10)) < 0.04
    # S = 1 is random selection: many different parents.
    config1 = EvolutionConfig(population_size=10, sample_size=1, seed=4)
    parents1 = {propose(config1, NASNET, NASNET_MUT, population, k).parent_seq for k in range(200)}
    assert len(parents1) == 10


def test_aging_removes_oldest_non_aging_removes_worst() -> None:
    members = [Member(k, NB201.sample(rng_for(0, k)), f) for k, f in enumerate([0.9, 0.1, 0.5, 0.7])]
    aging = EvolutionConfig(population_size=3, sample_size=2, algorithm="aging")
    non_aging = EvolutionConfig(population_size=3, sample_size=2, algorithm="non-aging")
    pop_a: tuple[Member, ...] = ()
    pop_n: tuple[Member, ...] = ()
    for m in members:
        pop_a, removed_a = observe(aging, pop_a, m)
        pop_n, removed_n = observe(non_aging, pop_n, m)
    assert [m.seq for m in pop_a] == [1, 2, 3] and removed_a is not None and removed_a.seq == 0
    assert [m.seq for m in pop_n] == [0, 2, 3] and removed_n is not None and removed_n.seq == 1


def test_random_search_never_mutates() -> None:
    config = EvolutionConfig(population_size=2, sample_size=2, algorithm="random", seed=3)
    result = run_search(config, NB201, NB201_MUT, lambda g: 0.5, max_evaluations=30)
    assert all(p.mutation == "random" and p.parent_seq is None for p in result.proposals)


def test_proposal_randomness_depends_only_on_seed_and_sequence_number() -> None:
    config = EvolutionConfig(population_size=4, sample_size=2, seed=11)
    population = tuple(Member(k, NASNET.sample(rng_for(5, k)), random.Random(k).random()) for k in range(4))
    a = propose(config, NASNET, NASNET_MUT, population, 17)
    random.seed(12345)  # global RNG state must not matter
    b = propose(config, NASNET, NASNET_MUT, population, 17)
    assert a == b
    assert propose(config, NASNET, NASNET_MUT, population, 18) != a
    other_seed = EvolutionConfig(population_size=4, sample_size=2, seed=12)
    assert propose(other_seed, NASNET, NASNET_MUT, population, 17).genome != a.genome


def _async_log(config, n_workers: int, total: int, rng_seed: int):
    """Simulate workers finishing in random order; return the event log the orchestrator would store."""
    rng = random.Random(rng_seed)
    population: tuple[Member, ...] = ()
    pending: list = []
    events: list = []
    seq = 0
    while seq < total or pending:
        if seq < total and (len(pending) < n_workers):
            p = propose(config, NB201, NB201_MUT, population, seq)
            events.append(Proposed(p.seq, p.genome.fingerprint, p.parent_seq, len(events)))
            pending.append(p)
            seq += 1
            continue
        done = pending.pop(rng.randrange(len(pending)))
        if rng.random() < 0.1:
            events.append(Failed(done.seq, len(events)))
            continue
        fit = fixed_fitness(done.genome)
        events.append(Completed(done.seq, fit, fit, None, len(events)))
        population, _ = observe(config, population, Member(done.seq, done.genome, fit, fit))
    return events, population


def test_replay_re_derives_an_out_of_order_asynchronous_run() -> None:
    config = EvolutionConfig(population_size=8, sample_size=3, seed=21)
    events, population = _async_log(config, n_workers=5, total=120, rng_seed=3)
    assert verify(config, NB201, NB201_MUT, events) is None
    state = fold(config, NB201, NB201_MUT, events)
    assert [m.seq for m in state.population] == [m.seq for m in population]
    assert state.completed + state.failed == 120


def test_replay_reports_the_first_tampered_proposal() -> None:
    config = EvolutionConfig(population_size=8, sample_size=3, seed=21)
    events, _ = _async_log(config, n_workers=5, total=60, rng_seed=4)
    idx = next(i for i, e in enumerate(events) if isinstance(e, Proposed) and e.seq == 30)
    events[idx] = Proposed(30, "0" * 16, events[idx].parent_seq, events[idx].event_seq)
    mismatch = verify(config, NB201, NB201_MUT, events)
    assert mismatch is not None and mismatch.proposal_seq == 30
    assert "0000000000000000" in mismatch.describe()


def test_objectives() -> None:
    assert build_objective(None).fitness(0.9) == 0.9
    soft = build_objective({"kind": "mnas", "target_ms": 2.0})
    assert soft.fitness(0.9, 2.0) == pytest.approx(0.9)
    assert soft.fitness(0.9, 4.0) == pytest.approx(0.9 * 2**-0.07)
    assert soft.fitness(0.9, 1.0) == pytest.approx(0.9 * 0.5**-0.07)
    hard = build_objective({"kind": "mnas", "target_ms": 2.0, "hard": True})
    assert hard.fitness(0.9, 4.0) == pytest.approx(0.45)
    assert hard.fitness(0.9, 1.0) == pytest.approx(0.9 * 0.5**-0.07)
    bonus = build_objective({"kind": "accuracy", "on_chip_bonus": 0.1})
    assert bonus.fitness(0.5, 1.0, fits_on_chip=True) == pytest.approx(0.55)
    assert bonus.fitness(0.5, 1.0, fits_on_chip=False) == pytest.approx(0.5)
    assert build_objective("pareto").selection == "pareto"
    for bad in ({"kind": "mnas"}, {"kind": "speed"}, {"kind": "accuracy", "x": 1}, {"max_latency_ms": -1}, 3):
        with pytest.raises(ObjectiveError):
            build_objective(bad)


def test_pareto_front_and_pareto_selection() -> None:
    points = [(0.9, 5.0), (0.8, 2.0), (0.7, 3.0), (0.9, 6.0), (0.95, None)]
    assert pareto_front_indices(points) == [0, 1, 4]
    config = EvolutionConfig(population_size=4, sample_size=12, seed=2, selection="pareto")
    population = (
        Member(0, NB201.sample(rng_for(0, 0)), 0.9, 0.9, 5.0),
        Member(1, NB201.sample(rng_for(0, 1)), 0.8, 0.8, 2.0),
        Member(2, NB201.sample(rng_for(0, 2)), 0.7, 0.7, 3.0),
        Member(3, NB201.sample(rng_for(0, 3)), 0.6, 0.6, 9.0),
    )
    parents = [propose(config, NB201, NB201_MUT, population, 10 + k).parent_seq for k in range(1000)]
    # The front of a sample holding 0 and 1 is {0, 1}, picked uniformly; 3 is dominated by every other member.
    assert 3 not in parents
    assert parents.count(0) + parents.count(1) > 900
    assert abs(parents.count(0) - parents.count(1)) < 120


def test_config_validation() -> None:
    for kwargs in ({"population_size": 0}, {"sample_size": 0}, {"algorithm": "rl"}, {"selection": "worst"}):
        with pytest.raises(ValueError):
            EvolutionConfig(**kwargs)
