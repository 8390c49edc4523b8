"""Aging evolution, non-aging evolution and random search as pure propose/observe folds; the algorithm
registry; replay; the golden run."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

import spaces
from evolution import (
    AlgorithmContext,
    AlgorithmError,
    Completed,
    EvolutionConfig,
    Failed,
    Member,
    Proposal,
    Proposed,
    algorithm_names,
    algorithms,
    build_algorithm,
    build_objective,
    fold,
    register_algorithm,
    rng_for,
    verify,
)
from evolution.objectives import ObjectiveError, pareto_front_indices
from evolution.simulate import run_search

pytestmark = pytest.mark.unit

NASNET = spaces.get("nasnet")
NB201 = spaces.get("nb201")
NASNET_MUT = NASNET.build_mutation()
NB201_MUT = NB201.build_mutation()
GOLDEN = Path(__file__).parent / "golden" / "aging_nasnet_seed2019.json"


def fixed_fitness(genome) -> float:
    """A deterministic stand-in for accuracy: a pure function of the fingerprint."""
    return int(genome.fingerprint[:8], 16) / 2**32


def build(config: EvolutionConfig, space=NASNET, mutation=None):
    return config.build(space.codec, mutation if mutation is not None else space.build_mutation())


def folded(algo, members):
    """The state after observing ``members`` in order."""
    state = algo.initial()
    for m in members:
        state = algo.observe(state, m)
    return state


def propose(config: EvolutionConfig, algo, state, seq: int) -> Proposal:
    """Proposal ``seq`` from ``state``; proposing never changes the state of these algorithms."""
    proposal, after = algo.propose(state, seq, rng_for(config.seed, seq))
    assert after == state
    return proposal


def golden_run(space=NASNET.codec):
    config = EvolutionConfig(population_size=20, sample_size=5, algorithm="aging", seed=2019)
    return run_search(config, space, NASNET_MUT, fixed_fitness, max_evaluations=200)


def test_golden_first_200_proposals() -> None:
    expected = json.loads(GOLDEN.read_text())
    assert len(expected["fingerprints"]) == 200
    # The codec and the Space value both satisfy the SearchSpace protocol: the same 200 proposals.
    for space in (NASNET.codec, NASNET):
        result = golden_run(space)
        got = [p.genome.fingerprint for p in result.proposals]
        assert got == expected["fingerprints"]
        assert [p.parent_seq for p in result.proposals] == expected["parents"]


def test_golden_run_through_the_algorithm_protocol_and_replay() -> None:
    """The same proposals driven by hand through initial/propose/observe, then refolded by replay."""
    expected = json.loads(GOLDEN.read_text())
    config = EvolutionConfig(population_size=20, sample_size=5, algorithm="aging", seed=2019)
    algo = build(config)
    assert algo.name == "aging"
    state = algo.initial()
    events: list = []
    for seq in range(200):
        p = propose(config, algo, state, seq)
        events.append(Proposed(p.seq, p.genome.fingerprint, p.parent_seq, len(events)))
        fit = fixed_fitness(p.genome)
        events.append(Completed(seq, fit, fit, None, len(events)))
        state = algo.observe(state, Member(seq, p.genome, fit, fit))
    assert [e.fingerprint for e in events if isinstance(e, Proposed)] == expected["fingerprints"]
    assert [e.parent_seq for e in events if isinstance(e, Proposed)] == expected["parents"]
    replayed = fold(algo, config.seed, events)
    assert replayed.mismatch is None and replayed.completed == 200
    assert replayed.state == state
    assert [m.seq for m in replayed.population] == list(range(180, 200))


def test_random_phase_until_population_is_full_then_tournament() -> None:
    config = EvolutionConfig(population_size=5, sample_size=3, seed=1)
    algo = build(config)
    state = algo.initial()
    for k in range(5):
        p = propose(config, algo, state, k)
        assert p.parent_seq is None and p.mutation == "random"
        # Proposals while others are still pending stay random: only *completed* members count.
    for k in range(5):
        state = algo.observe(state, Member(k, NASNET.sample(rng_for(9, k)), float(k)))
    child = propose(config, algo, state, 5)
    assert child.parent_seq is not None and child.mutation != "random"


def test_observe_and_propose_never_change_the_state_they_are_given() -> None:
    config = EvolutionConfig(population_size=3, sample_size=2, seed=8)
    algo = build(config)
    members = [Member(k, NASNET.sample(rng_for(2, k)), float(k)) for k in range(5)]
    state = folded(algo, members[:3])
    snapshot = tuple(state)
    grown = algo.observe(state, members[3])
    assert tuple(state) == snapshot and grown != state
    propose(config, algo, grown, 9)
    assert tuple(state) == snapshot
    # restore() rebuilds the aging state from the stored population alone.
    assert algo.restore(algo.population(grown)) == grown


def test_tournament_picks_best_of_sample_with_replacement() -> None:
    config = EvolutionConfig(population_size=10, sample_size=10, seed=4)
    algo = build(config)
    state = folded(algo, [Member(k, NASNET.sample(rng_for(1, k)), float(k % 7)) for k in range(10)])
    parents = [propose(config, algo, state, 100 + k).parent_seq for k in range(2000)]
    # The best member (seq 6) wins whenever it is drawn: with replacement that is 1 - 0.9^10 = 0.651.
    assert abs(parents.count(6) / 2000 - (1 - 0.9**10)) < 0.04
    # The second best (seq 5) wins when 6 is not drawn but 5 is: 0.9^10 - 0.8^10 = 0.242.
    assert abs(parents.count(5) / 2000 - (0.9**10 - 0.8**10)) < 0.04
    # S = 1 is random selection: many different parents.
    config1 = EvolutionConfig(population_size=10, sample_size=1, seed=4)
    algo1 = build(config1)
    parents1 = {propose(config1, algo1, state, k).parent_seq for k in range(200)}
    assert len(parents1) == 10


def test_aging_removes_oldest_non_aging_removes_worst() -> None:
    members = [Member(k, NB201.sample(rng_for(0, k)), f) for k, f in enumerate([0.9, 0.1, 0.5, 0.7])]
    aging = build(EvolutionConfig(population_size=3, sample_size=2, algorithm="aging"), NB201)
    non_aging = build(EvolutionConfig(population_size=3, sample_size=2, algorithm="non-aging"), NB201)
    assert (aging.name, non_aging.name) == ("aging", "non-aging")
    pop_a, pop_n = aging.initial(), non_aging.initial()
    removed_a = removed_n = None
    for m in members:
        before_a, before_n = aging.population(pop_a), non_aging.population(pop_n)
        pop_a, pop_n = aging.observe(pop_a, m), non_aging.observe(pop_n, m)
        left_a = [x for x in before_a if x not in aging.population(pop_a)]
        left_n = [x for x in before_n if x not in non_aging.population(pop_n)]
        assert len(left_a) <= 1 and len(left_n) <= 1
        removed_a = left_a[0] if left_a else removed_a
        removed_n = left_n[0] if left_n else removed_n
    assert [m.seq for m in aging.population(pop_a)] == [1, 2, 3] and removed_a is not None and removed_a.seq == 0
    assert [m.seq for m in non_aging.population(pop_n)] == [0, 2, 3] and removed_n is not None and removed_n.seq == 1


def test_random_search_never_mutates() -> None:
    config = EvolutionConfig(population_size=2, sample_size=2, algorithm="random", seed=3)
    result = run_search(config, NB201.codec, NB201_MUT, lambda g: 0.5, max_evaluations=30)
    assert all(p.mutation == "random" and p.parent_seq is None for p in result.proposals)
    assert len(result.proposals) == 30
    # Its population (the P most recent completions) only feeds the status view.
    algo = build(config, NB201)
    state = folded(algo, [Member(k, NB201.sample(rng_for(0, k)), 0.5) for k in range(5)])
    assert [m.seq for m in algo.population(state)] == [3, 4]


def test_proposal_randomness_depends_only_on_seed_and_sequence_number() -> None:
    config = EvolutionConfig(population_size=4, sample_size=2, seed=11)
    algo = build(config)
    state = folded(algo, [Member(k, NASNET.sample(rng_for(5, k)), random.Random(k).random()) for k in range(4)])
    a = propose(config, algo, state, 17)
    random.seed(12345)  # global RNG state must not matter
    b = propose(config, algo, state, 17)
    assert a == b
    assert propose(config, algo, state, 18) != a
    other_seed = EvolutionConfig(population_size=4, sample_size=2, seed=12)
    assert propose(other_seed, build(other_seed), state, 17).genome != a.genome


def _async_log(config, n_workers: int, total: int, rng_seed: int):
    """Simulate workers finishing in random order; return the event log the orchestrator would store."""
    rng = random.Random(rng_seed)
    algo = build(config, NB201)
    state = algo.initial()
    pending: list = []
    events: list = []
    seq = 0
    while seq < total or pending:
        if seq < total and (len(pending) < n_workers):
            p = propose(config, algo, state, seq)
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
        state = algo.observe(state, Member(done.seq, done.genome, fit, fit))
    return events, algo.population(state)


def test_replay_re_derives_an_out_of_order_asynchronous_run() -> None:
    config = EvolutionConfig(population_size=8, sample_size=3, seed=21)
    events, population = _async_log(config, n_workers=5, total=120, rng_seed=3)
    algo = build(config, NB201)
    assert verify(algo, config.seed, events) is None
    state = fold(algo, config.seed, events)
    assert [m.seq for m in state.population] == [m.seq for m in population]
    assert [m.seq for m in algo.population(state.state)] == [m.seq for m in population]
    assert state.completed + state.failed == 120
    # Another seed re-derives other proposals: the log no longer verifies.
    assert verify(algo, config.seed + 1, events) is not None


def test_replay_reports_the_first_tampered_proposal() -> None:
    config = EvolutionConfig(population_size=8, sample_size=3, seed=21)
    events, _ = _async_log(config, n_workers=5, total=60, rng_seed=4)
    idx = next(i for i, e in enumerate(events) if isinstance(e, Proposed) and e.seq == 30)
    events[idx] = Proposed(30, "0" * 16, events[idx].parent_seq, events[idx].event_seq)
    mismatch = verify(build(config, NB201), config.seed, events)
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
    algo = build(config, NB201)
    state = folded(algo, (
        Member(0, NB201.sample(rng_for(0, 0)), 0.9, 0.9, 5.0),
        Member(1, NB201.sample(rng_for(0, 1)), 0.8, 0.8, 2.0),
        Member(2, NB201.sample(rng_for(0, 2)), 0.7, 0.7, 3.0),
        Member(3, NB201.sample(rng_for(0, 3)), 0.6, 0.6, 9.0),
    ))
    parents = [propose(config, algo, state, 10 + k).parent_seq for k in range(1000)]
    # The front of a sample holding 0 and 1 is {0, 1}, picked uniformly; 3 is dominated by every other member.
    assert 3 not in parents
    assert parents.count(0) + parents.count(1) > 900
    assert abs(parents.count(0) - parents.count(1)) < 120


def test_config_validation() -> None:
    for kwargs, name in (({"population_size": 0}, "population_size"), ({"sample_size": 0}, "sample_size"),
                         ({"algorithm": "no-such-algorithm"}, "'no-such-algorithm'"), ({"selection": "worst"}, "'worst'")):
        with pytest.raises(AlgorithmError, match=name):
            EvolutionConfig(**kwargs)
    # AlgorithmError is a ValueError (callers that caught ValueError keep working).
    with pytest.raises(ValueError):
        EvolutionConfig(population_size=0)


# --- the algorithm registry --------------------------------------------------------------------------


def test_builtin_algorithms_are_registered() -> None:
    assert {"aging", "non-aging", "random"} <= set(algorithm_names())
    assert list(algorithm_names()) == sorted(algorithm_names())


def test_unknown_algorithm_names_raise_algorithm_error_naming_them() -> None:
    context = AlgorithmContext(NB201.codec, NB201_MUT, 4, 2)
    with pytest.raises(AlgorithmError, match="unknown algorithm 'reinforce-xyz'") as raised:
        build_algorithm("reinforce-xyz", context)
    assert "aging" in str(raised.value) and "random" in str(raised.value)
    with pytest.raises(AlgorithmError, match="'reinforce-xyz'"):
        EvolutionConfig(algorithm="reinforce-xyz")
    with pytest.raises(AlgorithmError, match="unknown algorithm"):
        build_algorithm(None, context)


@pytest.mark.parametrize("algorithm", ["aging", "non-aging", "random"])
def test_unknown_options_raise_algorithm_error_naming_them(algorithm: str) -> None:
    config = EvolutionConfig(population_size=4, sample_size=2, algorithm=algorithm,
                             options={"temperature": 1.0, "baseline": 0.5})
    with pytest.raises(AlgorithmError, match="unknown algorithm option") as raised:
        config.build(NB201.codec, NB201_MUT)
    assert "baseline" in str(raised.value) and "temperature" in str(raised.value)
    # Without options the same config builds.
    EvolutionConfig(population_size=4, sample_size=2, algorithm=algorithm).build(NB201.codec, NB201_MUT)


def test_context_option_checks_name_the_option() -> None:
    context = AlgorithmContext(NB201.codec, NB201_MUT, options={"lr": 5.0, "flag": True, "mode": "x"})
    with pytest.raises(AlgorithmError, match="option lr must be between 0 and 1"):
        context.option("lr", 0.1, 0.0, 1.0)
    with pytest.raises(AlgorithmError, match="option flag must be a finite number"):
        context.option("flag", 0.1, 0.0, 1.0)
    with pytest.raises(AlgorithmError, match="option mode must be one of a, b"):
        context.choice("mode", "a", ("a", "b"))
    assert context.option("absent", 0.25, 0.0, 1.0) == 0.25
    assert context.choice("other", "b", ("a", "b")) == "b"


@dataclass(frozen=True, slots=True)
class _GreedyFirst:
    """A toy plug-in: proposal k mutates the best member so far (random until one completed); the state is
    (best member or None, number observed). Options: ``warmup`` (random proposals first)."""

    context: AlgorithmContext
    warmup: int
    name: str = "greedy-first-test"

    def initial(self):
        return (None, 0)

    def observe(self, state, member):
        best, n = state
        return (member if best is None or member.fitness > best.fitness else best, n + 1)

    def propose(self, state, seq, rng):
        best, n = state
        if best is None or n < self.warmup:
            return Proposal(seq, self.context.space.sample(rng), None, "random"), state
        child = self.context.mutation(best.genome, rng)
        return Proposal(seq, child.genome, best.seq, child.description), state

    def population(self, state):
        return () if state[0] is None else (state[0],)

    def restore(self, members):
        return None


def _greedy_factory(context: AlgorithmContext) -> _GreedyFirst:
    context.check_options(("warmup",))
    return _GreedyFirst(context, int(context.option("warmup", 3, 0, 1000)))


@pytest.fixture
def _forget_greedy():
    """Run-time registrations last for the process: drop the toy plug-in again afterwards."""
    yield
    algorithms._factories.pop("greedy-first-test", None)


@pytest.mark.usefixtures("_forget_greedy")
def test_an_algorithm_registered_at_run_time_runs_through_run_search() -> None:
    register_algorithm("greedy-first-test", _greedy_factory)
    register_algorithm("greedy-first-test", _greedy_factory)  # the same factory again is fine
    assert "greedy-first-test" in algorithm_names()
    with pytest.raises(AlgorithmError, match="greedy-first-test"):
        register_algorithm("greedy-first-test", lambda context: _greedy_factory(context))
    with pytest.raises(AlgorithmError, match="registered already"):
        register_algorithm("aging", _greedy_factory)

    config = EvolutionConfig(population_size=4, sample_size=2, algorithm="greedy-first-test", seed=5,
                             options={"warmup": 5})
    result = run_search(config, NB201.codec, NB201_MUT, fixed_fitness, max_evaluations=40)
    assert len(result.proposals) == 40
    assert [p.seq for p in result.proposals] == list(range(40))
    assert all(p.parent_seq is None and p.mutation == "random" for p in result.proposals[:5])
    assert all(p.parent_seq is not None and p.mutation.startswith("edge_op") for p in result.proposals[5:])
    # Every child's parent is the best member completed before it.
    for k, p in enumerate(result.proposals[5:], start=5):
        best = max(range(k), key=lambda i: (result.fitnesses[i], -i))
        assert p.parent_seq == best
    assert result.best.fitness == max(result.fitnesses)
    # Deterministic, and replay folds it like any built-in.
    again = run_search(config, NB201.codec, NB201_MUT, fixed_fitness, max_evaluations=40)
    assert [p.genome for p in again.proposals] == [p.genome for p in result.proposals]
    events: list = []
    for p, fit in zip(result.proposals, result.fitnesses, strict=True):
        events.append(Proposed(p.seq, p.genome.fingerprint, p.parent_seq, len(events)))
        events.append(Completed(p.seq, fit, fit, None, len(events)))
    algo = config.build(NB201.codec, NB201_MUT)
    assert isinstance(algo, _GreedyFirst) and algo.warmup == 5
    assert verify(algo, config.seed, events) is None
    # Its options are checked like the built-ins'.
    with pytest.raises(AlgorithmError, match=r"unknown algorithm option.*depth"):
        EvolutionConfig(algorithm="greedy-first-test", options={"depth": 2}).build(NB201.codec, NB201_MUT)
    with pytest.raises(AlgorithmError, match="option warmup"):
        EvolutionConfig(algorithm="greedy-first-test", options={"warmup": -1}).build(NB201.codec, NB201_MUT)
