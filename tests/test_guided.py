"""The guided algorithm (predictor-guided regularized evolution): the surrogate's incremental inverse against a
direct solve, the fold's contract (values, determinism, replay of an asynchronous run), candidate choice,
options refused at build time."""

from __future__ import annotations

import random

import numpy as np
import pytest

import spaces
from evolution import AlgorithmError, Completed, EvolutionConfig, Member, Proposed, fold, rng_for, verify
from evolution.guided import GuidedState, _hamming_kernel, _standardized_targets
from evolution.simulate import run_search
from tests.builders import PartialNB201View

pytestmark = pytest.mark.unit

NB201 = spaces.get("nb201")
NASNET = spaces.get("nasnet")


def fixed_fitness(genome) -> float:
    return int(genome.fingerprint[:8], 16) / 2**32


def _build(space=NB201, seed: int = 0, **options):
    return EvolutionConfig(10, 3, "guided", seed, options=options).build(space.codec, space.build_mutation())


@pytest.mark.parametrize("space", [NB201, NASNET], ids=["nb201", "nasnet"])
def test_incremental_inverse_matches_a_direct_solve_with_a_sliding_window(space) -> None:
    algo = _build(space, window=25)
    state = algo.initial()
    for k in range(60):
        state = algo.observe(state, Member(k, space.sample(rng_for(3, k)), random.Random(k).random()))
    assert len(state.window) == 25 and [c.member.seq for c in state.window] == list(range(35, 60))
    kernel = _hamming_kernel(state.xs, state.xs, algo.scale) + algo.noise * np.eye(25)
    assert np.abs(state.kinv @ kernel - np.eye(25)).max() < 1e-9
    queries = [space.decisions(space.sample(rng_for(4, j))) for j in range(6)]
    y = _standardized_targets(np.array([c.member.fitness for c in state.window]))
    direct = _hamming_kernel(np.array(queries), state.xs, algo.scale) @ np.linalg.solve(kernel, y)
    assert np.allclose(algo.predict(state, queries), direct, atol=1e-8)


def test_states_are_values_and_proposals_deterministic() -> None:
    algo = _build()
    assert algo.restore(()) is None
    state = algo.initial()
    members = [Member(k, NB201.sample(rng_for(1, k)), fixed_fitness(NB201.sample(rng_for(1, k)))) for k in range(14)]
    for m in members[:12]:
        state = algo.observe(state, m)
    kinv = np.array(state.kinv)
    grown = algo.observe(state, members[12])
    assert np.array_equal(kinv, state.kinv) and len(state.window) == 12 and len(grown.window) == 13
    assert not state.kinv.flags.writeable and not grown.xs.flags.writeable
    p, after = algo.propose(grown, 40, rng_for(0, 40))
    assert after is grown and p.parent_seq is not None and "predicted" in p.mutation
    random.seed(5)
    np.random.seed(5)
    assert algo.propose(grown, 40, rng_for(0, 40))[0] == p
    # The population is the P most recent completions (removal: oldest, as aging evolution).
    assert [m.seq for m in algo.population(grown)] == list(range(3, 13))
    worst = _build(removal="worst")
    kept = worst.initial()
    for m in members[:13]:
        kept = worst.observe(kept, m)
    assert sorted(m.fitness for m in worst.population(kept)) == sorted(m.fitness for m in members[:13])[3:]


def test_the_child_is_the_candidate_the_surrogate_ranks_best_and_never_a_seen_genome() -> None:
    from evolution.regularized import select_parent

    algo = _build(seed=3)
    result = run_search(EvolutionConfig(10, 3, "guided", 3), NB201.codec, NB201.build_mutation(),
                        fixed_fitness, max_evaluations=60)
    genomes = [p.genome for p in result.proposals]
    assert len(set(genomes)) == 60  # random ones may repeat in general; guided children never do
    # Re-derive proposal 30 by hand: its child has the highest prediction among the fresh candidates.
    state = algo.initial()
    for k in range(30):
        state = algo.observe(state, Member(k, genomes[k], result.fitnesses[k]))
    rng = rng_for(3, 30)
    parent = select_parent(state.members, 3, "best", rng)
    assert parent.seq == result.proposals[30].parent_seq
    mutation = NB201.build_mutation()
    children = [mutation(parent.genome, rng).genome for _ in range(10)]
    seen = {NB201.decisions(g) for g in genomes[:30]}
    fresh = list(dict.fromkeys(g for g in children if NB201.decisions(g) not in seen))
    assert len(fresh) > 1
    scores = algo.predict(state, [NB201.decisions(g) for g in fresh])
    assert genomes[30] == fresh[max(range(len(fresh)), key=lambda i: (scores[i], -i))]
    assert max(scores) > min(scores)


def _async_log(config, space, n_workers: int, total: int, rng_seed: int):
    rng = random.Random(rng_seed)
    algo = config.build(space.codec, space.build_mutation())
    state = algo.initial()
    pending, events, seq = [], [], 0
    while seq < total or pending:
        if seq < total and len(pending) < n_workers:
            p, state = algo.propose(state, seq, rng_for(config.seed, seq))
            events.append(Proposed(p.seq, p.genome.fingerprint, p.parent_seq, len(events)))
            pending.append(p)
            seq += 1
            continue
        done = pending.pop(rng.randrange(len(pending)))
        fit = fixed_fitness(done.genome)
        events.append(Completed(done.seq, fit, fit, None, len(events)))
        state = algo.observe(state, Member(done.seq, done.genome, fit, fit))
    return algo, events, state


@pytest.mark.parametrize("space", [NB201, NASNET], ids=["nb201", "nasnet"])
def test_replay_re_derives_an_out_of_order_asynchronous_run(space) -> None:
    config = EvolutionConfig(8, 3, "guided", 17, options={"window": 40})
    algo, events, state = _async_log(config, space, n_workers=5, total=90, rng_seed=2)
    assert verify(algo, config.seed, events) is None
    replayed = fold(algo, config.seed, events)
    assert isinstance(replayed.state, GuidedState) and replayed.state == state
    assert verify(algo, config.seed + 1, events) is not None


def test_bad_options_are_refused_at_build_time() -> None:
    for options, message in [
        ({"candidates": 0}, "option candidates must be between 1 and 1000"),
        ({"candidates": 2.5}, "candidates must be a whole number"),
        ({"removal": "random"}, "option removal must be one of oldest, worst"),
        ({"noise": 0}, "option noise must be between"),
        ({"window": 1}, "option window must be between 2"),
        ({"beta": 1}, "unknown algorithm option(s) beta"),
    ]:
        with pytest.raises(AlgorithmError) as raised:
            _build(**options)
        assert message in str(raised.value)


def test_removal_oldest_is_aging_and_the_default() -> None:
    algo = _build()
    assert algo.removal == "oldest"
    state = algo.initial()
    for k in range(15):
        state = algo.observe(state, Member(k, NB201.sample(rng_for(6, k)), float(k % 4)))
    assert [m.seq for m in algo.population(state)] == list(range(5, 15))


@pytest.mark.parametrize("name", [s.name for s in spaces.all_spaces()])
def test_every_registered_space_runs_and_replays(name: str) -> None:
    """Including spaces whose mutations reach genomes outside the decision view (they get the prior mean)."""
    space = spaces.get(name)
    config = EvolutionConfig(4, 2, "guided", 9, options={"window": 20})
    result = run_search(config, space.codec, space.build_mutation(), fixed_fitness, max_evaluations=24)
    assert len(result.proposals) == 24 and all(p.parent_seq is not None for p in result.proposals[4:])
    events: list = []
    for p, fit in zip(result.proposals, result.fitnesses, strict=True):
        events.append(Proposed(p.seq, p.genome.fingerprint, p.parent_seq, len(events)))
        events.append(Completed(p.seq, fit, fit, None, len(events)))
    assert verify(config.build(space.codec, space.build_mutation()), config.seed, events) is None


def test_candidates_outside_the_decision_view_get_the_prior_mean() -> None:
    config = EvolutionConfig(4, 2, "guided", 2)
    result = run_search(config, PartialNB201View(), NB201.build_mutation(), fixed_fitness, max_evaluations=60)
    assert len(result.proposals) == 60
    assert any(p.genome.ops[0] == "none" for p in result.proposals[4:])  # proposed and observed, no error
