"""The REINFORCE algorithm (``rl``) and its policies: analytic gradients against finite differences, the
fold's contract (immutable states, deterministic proposals, replay of an asynchronous run), learning on a
toy reward, options refused at build time, and the golden first 200 proposals."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

import spaces
from evolution import (
    AlgorithmError,
    Completed,
    EvolutionConfig,
    Failed,
    Member,
    Proposed,
    fold,
    rng_for,
    verify,
)
from evolution.policies import FactorizedPolicy, Layout, LSTMPolicy, Step, log_prob_and_entropy, steps_of
from evolution.reinforce import ReinforceState
from evolution.simulate import run_search
from tests.builders import PartialNB201View

pytestmark = pytest.mark.unit

NASNET = spaces.get("nasnet")
NB201 = spaces.get("nb201")
GOLDEN = Path(__file__).parent / "golden" / "rl_seed2019.json"


def fixed_fitness(genome) -> float:
    return int(genome.fingerprint[:8], 16) / 2**32


def _objective(policy, params, steps, advantage, beta) -> float:
    logp, entropy = log_prob_and_entropy(policy, params, steps)
    return -advantage * logp - beta * entropy


def _check_gradients(policy, space, seed: int, advantage: float, beta: float, probes: int = 12) -> None:
    """Central differences of the objective at random coordinates of every parameter array."""
    gen = np.random.default_rng(seed)
    params = policy.init(gen)
    # Move away from the symmetric start so every term of the gradient matters.
    params = tuple(np.array(p + 0.3 * gen.standard_normal(p.shape)) for p in params)
    steps = steps_of(space, space.decisions(space.sample(random.Random(seed))))
    grads, _, _ = policy.grad(params, steps, advantage, beta)
    assert [g.shape for g in grads] == [p.shape for p in params]
    eps = 1e-6
    for index, p in enumerate(params):
        for _ in range(probes):
            at = tuple(int(gen.integers(0, n)) for n in p.shape)
            plus = [np.array(q) for q in params]
            minus = [np.array(q) for q in params]
            plus[index][at] += eps
            minus[index][at] -= eps
            numeric = (_objective(policy, tuple(plus), steps, advantage, beta)
                       - _objective(policy, tuple(minus), steps, advantage, beta)) / (2 * eps)
            assert grads[index][at] == pytest.approx(numeric, rel=1e-5, abs=1e-7), (policy.name, index, at)


@pytest.mark.parametrize("space", [NB201, NASNET], ids=["nb201", "nasnet"])
def test_factorized_gradient_matches_finite_differences(space) -> None:
    policy = FactorizedPolicy(Layout.probe(space))
    _check_gradients(policy, space, seed=3, advantage=1.7, beta=0.3, probes=40)


@pytest.mark.parametrize("space", [NB201, NASNET], ids=["nb201", "nasnet"])
def test_lstm_gradient_matches_finite_differences(space) -> None:
    policy = LSTMPolicy(Layout.probe(space), hidden=7, embedding=5, init_scale=0.5)
    _check_gradients(policy, space, seed=4, advantage=-0.8, beta=0.05, probes=10 if space is NB201 else 3)


def test_layout_of_the_built_in_spaces() -> None:
    nb = Layout.probe(NB201)
    assert nb.positions == (("op", 5),) * 6 and nb.kinds == (("op", 5),)
    nas = Layout.probe(NASNET)
    assert len(nas.positions) == 40
    # Combination k of a cell reads one of 2 + k states; ops are one of 8.
    assert [c for _, c in nas.positions[:20:2]] == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert dict(nas.kinds) == {"input": 6, "op": 8}


def test_factorized_pads_decisions_wider_than_the_layout() -> None:
    policy = FactorizedPolicy(Layout((("op", 2),), (("op", 2),)))
    params = (np.array([[0.5, -0.5]]),)
    steps = [Step(0, "op", 4, 3), Step(1, "op", 3, 0)]
    logp, entropy = log_prob_and_entropy(policy, params, steps)
    z = np.array([0.5, -0.5, 0.0, 0.0])
    expected = z[3] - math.log(np.exp(z).sum()) - math.log(3)
    assert logp == pytest.approx(expected)
    assert entropy > 0
    grads, _, _ = policy.grad(params, steps, 1.0, 0.0)
    assert grads[0].shape == (1, 2)


def _config(policy: str = "factorized", seed: int = 7, **options) -> EvolutionConfig:
    return EvolutionConfig(population_size=5, sample_size=2, algorithm="rl", seed=seed,
                           options={"policy": policy, **options})


@pytest.mark.parametrize("policy", ["factorized", "lstm"])
def test_states_are_values_never_changed_in_place(policy: str) -> None:
    options = {"hidden": 8, "embedding": 4} if policy == "lstm" else {}
    algo = _config(policy, **options).build(NB201.codec, NB201.build_mutation())
    state = algo.initial()
    assert algo.restore(()) is None and algo.restore([]) is None
    members = [Member(k, NB201.sample(rng_for(1, k)), 50.0 + k) for k in range(8)]
    for m in members[:3]:
        state = algo.observe(state, m)
    snapshot = [np.array(p) for p in state.params]
    grown = algo.observe(state, members[3])
    assert all(np.array_equal(a, b) for a, b in zip(snapshot, state.params, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(grown.params, state.params, strict=True))
    assert all(not p.flags.writeable for p in grown.params)
    proposal, after = algo.propose(grown, 11, rng_for(7, 11))
    assert after is grown and proposal.parent_seq is None and proposal.mutation == f"rl:{policy}"
    # The same state, seq and seed give the same proposal whatever the global RNG does.
    random.seed(99)
    np.random.seed(99)
    again, _ = algo.propose(grown, 11, rng_for(7, 11))
    assert again == proposal
    # population() is the P most recent completions.
    for m in members[4:]:
        grown = algo.observe(grown, m)
    assert [m.seq for m in algo.population(grown)] == [3, 4, 5, 6, 7]


def test_the_policy_learns_a_toy_reward() -> None:
    """Reward = number of conv_3x3 edges: after 300 completions the policy proposes mostly conv_3x3."""
    conv = 3  # index of nor_conv_3x3
    config = EvolutionConfig(population_size=10, sample_size=3, algorithm="rl", seed=1,
                             options={"learning_rate": 0.05})
    result = run_search(config, NB201.codec, NB201.build_mutation(),
                        lambda g: float(NB201.decisions(g).count(conv)), max_evaluations=300)
    last = result.fitnesses[-50:]
    assert sum(last) / len(last) > 4.0  # uniform sampling averages 1.2
    assert sum(result.fitnesses[:50]) / 50 < 2.5


def test_the_lstm_policy_learns_a_toy_reward() -> None:
    config = EvolutionConfig(population_size=10, sample_size=3, algorithm="rl", seed=2,
                             options={"policy": "lstm", "learning_rate": 0.02, "hidden": 16, "embedding": 8})
    result = run_search(config, NB201.codec, NB201.build_mutation(),
                        lambda g: float(NB201.decisions(g).count(3)), max_evaluations=200)
    assert sum(result.fitnesses[-40:]) / 40 > 3.0


def _async_log(config: EvolutionConfig, space, n_workers: int, total: int, rng_seed: int):
    rng = random.Random(rng_seed)
    algo = config.build(space.codec, space.build_mutation())
    state = algo.initial()
    pending: list = []
    events: list = []
    seq = 0
    while seq < total or pending:
        if seq < total and len(pending) < n_workers:
            p, state = algo.propose(state, seq, rng_for(config.seed, seq))
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
    return algo, events, state


@pytest.mark.parametrize(("policy", "space"), [("factorized", NB201), ("factorized", NASNET), ("lstm", NB201)])
def test_replay_re_derives_an_out_of_order_asynchronous_run(policy: str, space) -> None:
    options = {"learning_rate": 0.05} if policy == "factorized" else {"hidden": 8, "embedding": 4}
    config = _config(policy, seed=21, **options)
    algo, events, state = _async_log(config, space, n_workers=4, total=80, rng_seed=5)
    assert verify(algo, config.seed, events) is None
    replayed = fold(algo, config.seed, events)
    assert isinstance(replayed.state, ReinforceState) and replayed.state == state
    assert replayed.completed + replayed.failed == 80
    # A different completion order is a different policy: the same log with two completions swapped
    # re-derives other proposals afterwards.
    first = [i for i, e in enumerate(events) if isinstance(e, Completed)][:2]
    swapped = list(events)
    swapped[first[0]], swapped[first[1]] = swapped[first[1]], swapped[first[0]]
    assert verify(algo, config.seed, swapped) is not None
    assert verify(algo, config.seed + 1, events) is not None


def test_bad_options_are_refused_at_build_time_in_one_line() -> None:
    mutation = NB201.build_mutation()
    for options, message in [
        ({"policy": "transformer"}, "option policy must be one of factorized, lstm"),
        ({"learning_rate": -1}, "option learning_rate must be between"),
        ({"learning_rate": 0}, "learning_rate must be above 0"),
        ({"ema_momentum": 1.0}, "ema_momentum must be below 1"),
        ({"entropy_weight": float("nan")}, "must be a finite number"),
        ({"hidden": 8}, "unknown algorithm option(s) hidden"),
        ({"policy": "lstm", "hidden": 2.5}, "hidden must be a whole number"),
        ({"policy": "lstm", "hidden": 0}, "hidden must be between 1 and 1024"),
        ({"temperature": 1}, "unknown algorithm option(s) temperature"),
    ]:
        with pytest.raises(AlgorithmError) as raised:
            EvolutionConfig(4, 2, "rl", options=options).build(NB201.codec, mutation)
        assert message in str(raised.value) and "\n" not in str(raised.value)


def golden_run(space, policy: str):
    config = EvolutionConfig(population_size=20, sample_size=5, algorithm="rl", seed=2019,
                             options={"policy": policy, "learning_rate": 0.05})
    return run_search(config, space.codec, space.build_mutation(), fixed_fitness, max_evaluations=200)


def test_golden_first_200_proposals() -> None:
    """The first 200 proposals of seed 2019 (fitness = fingerprint[:8] / 2^32), pinned per space and policy."""
    expected = json.loads(GOLDEN.read_text())
    for key in ("nasnet/factorized", "nb201/factorized", "nb201/lstm"):
        space_name, policy = key.split("/")
        result = golden_run(spaces.get(space_name), policy)
        assert [p.genome.fingerprint for p in result.proposals] == expected[key], key
    assert len(expected["nasnet/factorized"]) == 200


@pytest.mark.parametrize("name", [s.name for s in spaces.all_spaces()])
@pytest.mark.parametrize("policy", ["factorized", "lstm"])
def test_every_registered_space_runs_and_replays(name: str, policy: str) -> None:
    space = spaces.get(name)
    options = {"policy": policy, "learning_rate": 0.05} | ({"hidden": 8, "embedding": 4} if policy == "lstm" else {})
    config = EvolutionConfig(4, 2, "rl", 9, options=options)
    result = run_search(config, space.codec, space.build_mutation(), fixed_fitness, max_evaluations=16)
    assert all(p.mutation == f"rl:{policy}" for p in result.proposals)
    events: list = []
    for p, fit in zip(result.proposals, result.fitnesses, strict=True):
        events.append(Proposed(p.seq, p.genome.fingerprint, p.parent_seq, len(events)))
        events.append(Completed(p.seq, fit, fit, None, len(events)))
    assert verify(config.build(space.codec, space.build_mutation()), config.seed, events) is None


def test_a_completed_genome_outside_the_decision_view_moves_the_baseline_only() -> None:
    algo = EvolutionConfig(4, 2, "rl", 1).build(PartialNB201View(), NB201.build_mutation())
    state = algo.observe(algo.initial(), Member(0, NB201.from_decisions((1, 2, 3, 4, 1, 2)), 50.0))
    stranger = Member(1, NB201.from_decisions((0, 2, 3, 4, 1, 2)), 80.0)
    after = algo.observe(state, stranger)
    assert after.steps == state.steps == 1 and after.params is state.params
    assert after.baseline != state.baseline and [m.seq for m in after.recent] == [0, 1]
