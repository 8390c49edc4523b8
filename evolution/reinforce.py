"""REINFORCE (Williams 1992) over a space's decision sequence: the reinforcement-learning arm of the
controlled comparison in Real et al. (2019).

The state is the policy's parameters, Adam's moments, the reward baseline and the most recent P
completions (for the status view). ``observe`` takes one policy-gradient step on the completed member:
reward = the member's fitness as the orchestrator computed it (accuracy, or the latency-aware reward of
the experiment's objective), advantage = reward - baseline, where the baseline is an exponential moving
average of the rewards (updated with the reward first, as NAS-Bench-201's code does), loss = -advantage *
log p(decisions) - entropy_weight * H(policy along the decisions). ``propose`` samples a sequence from
the policy as it stands after the completions logged so far, so the policy is a fold over completions
in completion order and replay re-derives every proposal of a parallel run (the gradient of a member
sampled under an older policy is taken at the current one: asynchronous REINFORCE, as Zoph & Le ran
it with many workers).

Options (``algorithm_options``), with their defaults per policy:

==================  =============================  =============================
option              ``factorized`` (default)       ``lstm``
==================  =============================  =============================
``learning_rate``   0.01 (Adam)                    0.00035 (Adam)
``ema_momentum``    0.9                            0.95
``entropy_weight``  0                              0.00001
``init_scale``      0.001 (normal std)             0.1 (uniform bound)
``hidden``          --                             100
``embedding``       --                             100
==================  =============================  =============================

Sources. ``factorized`` is NAS-Bench-201's REINFORCE baseline (Dong & Yang, ICLR 2020; code:
D-X-Y/AutoDL-Projects, ``exps/NAS-Bench-201-algos/reinforce.py`` and
``scripts-search/NAS-Bench-201-algos/REINFORCE.sh``): one logit vector per edge initialised as
``1e-3 * randn``, Adam, an EMA baseline with momentum 0.9 (``--EMA_momentum 0.9``), no entropy term;
its learning-rate grid is 0.01-0.5 (``hps/GRID-RL.sh``) and NATS-Bench's runs use 0.01
(``exps/NATS-algos/reinforce.py``), the default here. ``lstm`` follows Zoph et al. (CVPR 2018,
appendix A): one LSTM layer of 100 units, learning rate 0.00035, entropy weight 0.00001, an EMA
baseline of weight 0.95, weights uniform in [-0.1, 0.1] (they trained it with PPO; this is plain
REINFORCE, as in Zoph & Le 2017).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evolution.algorithms import AlgorithmContext, AlgorithmError, Member, Proposal
from evolution.policies import Adam, FactorizedPolicy, Layout, LSTMPolicy, Params, Policy, steps_of, zeros_like
from evolution.rng import rng_for
from genome import GenomeError, SearchSpace

POLICIES = ("factorized", "lstm")
#: Per policy: option -> (default, low, high).
DEFAULTS: dict[str, dict[str, tuple[float, float, float]]] = {
    "factorized": {
        "learning_rate": (0.01, 0.0, 10.0),
        "ema_momentum": (0.9, 0.0, 1.0),
        "entropy_weight": (0.0, 0.0, 1e6),
        "init_scale": (1e-3, 0.0, 10.0),
    },
    "lstm": {
        "learning_rate": (0.00035, 0.0, 10.0),
        "ema_momentum": (0.95, 0.0, 1.0),
        "entropy_weight": (1e-5, 0.0, 1e6),
        "init_scale": (0.1, 0.0, 10.0),
        "hidden": (100, 1, 1024),
        "embedding": (100, 1, 1024),
    },
}


@dataclass(frozen=True, slots=True, eq=False)
class ReinforceState:
    """The policy after ``steps`` updates: parameters, Adam moments, the EMA baseline's numerator and
    denominator (bias-corrected as in NAS-Bench-201's code), and the most recent P completions."""

    params: Params
    m: Params
    v: Params
    steps: int
    ema_num: float
    ema_den: float
    recent: tuple[Member, ...]

    @property
    def baseline(self) -> float | None:
        return self.ema_num / self.ema_den if self.ema_den > 0 else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReinforceState):
            return NotImplemented
        same = all(np.array_equal(a, b) for a, b in zip(self.params + self.m + self.v,
                                                          other.params + other.m + other.v, strict=True))
        return (same and (self.steps, self.ema_num, self.ema_den) == (other.steps, other.ema_num, other.ema_den)
                and [m.seq for m in self.recent] == [m.seq for m in other.recent])

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Reinforce:
    """REINFORCE with an EMA baseline and an entropy bonus over ``policy``; see the module docstring."""

    space: SearchSpace[Any]
    policy: Policy
    optimizer: Adam
    ema_momentum: float
    entropy_weight: float
    population_size: int
    seed: int

    @property
    def name(self) -> str:
        return "rl"

    def initial(self) -> ReinforceState:
        gen = np.random.default_rng(rng_for(self.seed, 0, stream="policy-init").getrandbits(64))
        params = self.policy.init(gen)
        return ReinforceState(params, zeros_like(params), zeros_like(params), 0, 0.0, 0.0, ())

    def observe(self, state: ReinforceState, member: Member) -> ReinforceState:
        recent = (*state.recent, member)[-self.population_size:]
        reward = float(member.fitness)
        if not math.isfinite(reward):
            return ReinforceState(state.params, state.m, state.v, state.steps, state.ema_num, state.ema_den, recent)
        num = self.ema_momentum * state.ema_num + (1.0 - self.ema_momentum) * reward
        den = self.ema_momentum * state.ema_den + (1.0 - self.ema_momentum)
        advantage = reward - num / den
        try:
            steps = steps_of(self.space, self.space.decisions(member.genome))
        except GenomeError:  # a seeded genome outside the decision view: it moves the baseline only
            return ReinforceState(state.params, state.m, state.v, state.steps, num, den, recent)
        grads, _, _ = self.policy.grad(state.params, steps, advantage, self.entropy_weight)
        t = state.steps + 1
        params, m, v = self.optimizer.step(state.params, grads, state.m, state.v, t)
        return ReinforceState(params, m, v, t, num, den, recent)

    def propose(self, state: ReinforceState, seq: int, rng: random.Random) -> tuple[Proposal, ReinforceState]:
        decisions = self.policy.sample(state.params, self.space, rng)
        return Proposal(seq, self.space.from_decisions(decisions), None, f"rl:{self.policy.name}"), state

    def population(self, state: ReinforceState) -> tuple[Member, ...]:
        return state.recent

    def restore(self, members: Sequence[Member]) -> None:
        return None  # a learned state: the caller refolds every completion


def layout_of(space: SearchSpace[Any]) -> Layout:
    """The decision layout of ``space``, or AlgorithmError when it has no usable decision view."""
    try:
        layout = Layout.probe(space)
    except (AttributeError, NotImplementedError, TypeError, ValueError) as exc:
        raise AlgorithmError(f"algorithm needs the space's decision sequence, which failed: {exc}") from None
    if not layout.positions:
        raise AlgorithmError(f"space {getattr(space, 'name', '?')} has an empty decision sequence")
    return layout


def integer_option(context: AlgorithmContext, key: str, default: float, low: float, high: float) -> int:
    value = context.option(key, default, low, high)
    if not value.is_integer():
        raise AlgorithmError(f"algorithm option {key} must be a whole number, got {context.options.get(key)!r}")
    return int(value)


def reinforce(context: AlgorithmContext) -> Reinforce:
    kind = context.choice("policy", "factorized", POLICIES)
    table = DEFAULTS[kind]
    context.check_options(("policy", *table))
    values = {key: context.option(key, *bounds) for key, bounds in table.items() if key not in ("hidden", "embedding")}
    layout = layout_of(context.space)
    policy: Policy
    if kind == "lstm":
        policy = LSTMPolicy(layout, integer_option(context, "hidden", *table["hidden"]),
                            integer_option(context, "embedding", *table["embedding"]), values["init_scale"])
    else:
        policy = FactorizedPolicy(layout, values["init_scale"])
    if values["learning_rate"] <= 0:
        raise AlgorithmError("algorithm option learning_rate must be above 0")
    if values["ema_momentum"] >= 1:
        raise AlgorithmError("algorithm option ema_momentum must be below 1")
    return Reinforce(context.space, policy, Adam(values["learning_rate"]), values["ema_momentum"],
                     values["entropy_weight"], context.population_size, context.seed)
