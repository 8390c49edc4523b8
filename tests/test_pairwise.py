"""The pairwise algorithm (Large-Scale Evolution's selection) as a pure fold: seeds first, the worse of two
dies at proposal and the better is the parent, the floor, never a second kill, determinism, restore, options,
and replay re-deriving the kills from the log alone."""

from __future__ import annotations

import random

import pytest

import spaces
from evolution import (
    AlgorithmContext,
    AlgorithmError,
    Completed,
    EvolutionConfig,
    Failed,
    Member,
    Proposed,
    algorithm_names,
    build_algorithm,
    fold,
    rng_for,
    verify,
)
from evolution.pairwise import PairwiseTournament
from genome.lse import seed_genome

pytestmark = pytest.mark.unit

LSE = spaces.get("lse")
NB201 = spaces.get("nb201")


def _algorithm(population: int = 6, space: spaces.Space = LSE, **options: object) -> PairwiseTournament:
    algo = EvolutionConfig(population_size=population, sample_size=2, algorithm="pairwise", seed=3,
                           options=dict(options)).build(space.codec, space.build_mutation())
    assert isinstance(algo, PairwiseTournament)
    return algo


def _fitness(seq: int) -> float:
    return ((seq * 7919) % 101) / 100.0


def test_pairwise_is_a_registered_algorithm() -> None:
    assert "pairwise" in algorithm_names()
    algo = _algorithm()
    assert (algo.name, algo.population_size, algo.min_population, algo.from_seed) == ("pairwise", 6, 3, True)


def test_the_first_p_proposals_are_copies_of_the_trivial_seed() -> None:
    algo = _algorithm()
    state = algo.initial()
    for seq in range(6):
        proposal, state = algo.propose(state, seq, rng_for(3, seq))
        assert (proposal.genome, proposal.parent_seq, proposal.mutation) == (seed_genome(), None, "seed")
    # Every worker asked before any seed finished: another seed copy, nobody to kill.
    proposal, after = algo.propose(state, 6, rng_for(3, 6))
    assert proposal.parent_seq is None and proposal.mutation == "seed" and after == state == ()


def _filled(algo: PairwiseTournament, n: int) -> tuple[Member, ...]:
    state = algo.initial()
    for seq in range(n):
        state = algo.observe(state, Member(seq, seed_genome(), _fitness(seq)))
    return state


def test_the_worse_of_two_dies_at_proposal_and_the_better_is_the_parent() -> None:
    algo = _algorithm()
    state = _filled(algo, 6)
    for seq in range(6, 40):
        proposal, after = algo.propose(state, seq, rng_for(3, seq))
        before = {m.seq: m for m in state}
        gone = set(before) - {m.seq for m in after}
        assert proposal.parent_seq in before and proposal.parent_seq not in gone
        if len(state) > algo.min_population:
            assert len(gone) == 1 and len(after) == len(state) - 1
            (loser,) = gone
            assert before[loser].fitness <= before[proposal.parent_seq].fitness
        else:
            assert after == state  # at the floor: copy and mutate, nobody dies
        # The others keep their completion order.
        assert [m.seq for m in after] == [m.seq for m in state if m.seq not in gone]
        state = after
        if seq % 3 == 0:
            state = algo.observe(state, Member(1000 + seq, proposal.genome, _fitness(seq)))
        assert len(state) >= algo.min_population


def test_a_single_member_is_the_parent_and_is_not_killed() -> None:
    algo = _algorithm(min_population=1)
    state = _filled(algo, 1)
    proposal, after = algo.propose(state, 6, rng_for(3, 6))
    assert proposal.parent_seq == 0 and after == state


def test_with_the_floor_at_p_nobody_ever_dies() -> None:
    algo = _algorithm(min_population=6)
    state = _filled(algo, 6)
    for seq in range(6, 30):
        _proposal, after = algo.propose(state, seq, rng_for(3, seq))
        assert after == state


def test_proposals_depend_on_state_seq_and_seed_alone_and_never_change_the_given_state() -> None:
    algo = _algorithm()
    state = _filled(algo, 6)
    frozen = tuple(state)
    a = algo.propose(state, 17, rng_for(3, 17))
    b = algo.propose(state, 17, rng_for(3, 17))
    assert a == b and state == frozen
    assert algo.restore(algo.population(state)) == state and algo.restore(()) == ()


def _simulate(algo: PairwiseTournament, seed: int, evaluations: int, workers: int) -> list[object]:
    """Asynchronous workers: up to ``workers`` proposals in flight, finished in random order, some failing;
    the event log the orchestrator would write (proposals, completions, failures)."""
    rng = random.Random(seed)
    state = algo.initial()
    in_flight: list[int] = []
    genomes = {}
    events: list[object] = []
    seq = done = 0
    killed: set[int] = set()
    while done < evaluations:
        while len(in_flight) < workers:
            proposal, after = algo.propose(state, seq, rng_for(seed, seq))
            gone = {m.seq for m in state} - {m.seq for m in after}
            assert not gone & killed  # never killed twice
            killed |= gone
            assert len(after) >= min(len(state), algo.min_population)
            state = after
            genomes[seq] = proposal
            events.append(Proposed(seq, proposal.genome.fingerprint, proposal.parent_seq))
            in_flight.append(seq)
            seq += 1
        k = in_flight.pop(rng.randrange(len(in_flight)))
        if rng.random() < 0.1:
            events.append(Failed(k))
            continue
        fitness = rng.random()
        state = algo.observe(state, Member(k, genomes[k].genome, fitness, fitness))
        events.append(Completed(k, fitness, fitness))
        done += 1
    return [state, events, killed]


@pytest.mark.parametrize("workers", [1, 4, 12])
def test_replay_rederives_every_proposal_and_kill_from_the_log(workers: int) -> None:
    algo = _algorithm(population=8)
    state, events, killed = _simulate(algo, 5, 60, workers)
    replayed = fold(algo, 5, events)  # type: ignore[arg-type]
    assert replayed.mismatch is None and replayed.completed == 60
    assert replayed.population == state
    assert not killed & {m.seq for m in replayed.population}  # type: ignore[operator]
    # A tampered parent is caught at its event.
    first_child = next(e for e in events if isinstance(e, Proposed) and e.parent_seq is not None)
    i = events.index(first_child)
    bad = [*events[:i], Proposed(first_child.seq, first_child.fingerprint, 999), *events[i + 1:]]
    mismatch = verify(algo, 5, bad)  # type: ignore[arg-type]
    assert mismatch is not None and mismatch.proposal_seq == first_child.seq


def test_spaces_without_a_seed_start_from_random_genomes() -> None:
    algo = _algorithm(space=NB201)
    assert not algo.from_seed
    proposal, _ = algo.propose((), 0, rng_for(3, 0))
    assert proposal.mutation == "random" and proposal.genome == NB201.sample(rng_for(3, 0))
    random_lse = _algorithm(initial="random")
    proposal, _ = random_lse.propose((), 0, rng_for(3, 0))
    assert proposal.mutation == "random" and proposal.genome == LSE.sample(rng_for(3, 0))


@pytest.mark.parametrize(("options", "message"), [
    ({"tournament": 3}, "unknown algorithm option"),
    ({"min_population": 0}, "between 1 and 6"),
    ({"min_population": 7}, "between 1 and 6"),
    ({"min_population": 2.5}, "must be an integer"),
    ({"initial": "zoo"}, "must be one of seed, random"),
])
def test_bad_options_are_refused_naming_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(AlgorithmError, match=message):
        _algorithm(**options)


def test_seeding_a_space_without_a_seed_and_pareto_selection_are_refused() -> None:
    with pytest.raises(AlgorithmError, match="has no trivial seed"):
        _algorithm(space=NB201, initial="seed")
    context = AlgorithmContext(LSE.codec, LSE.build_mutation(), 6, 2, "pareto")
    with pytest.raises(AlgorithmError, match="pareto"):
        build_algorithm("pairwise", context)
