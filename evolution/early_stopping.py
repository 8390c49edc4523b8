"""Early stopping as a pure fold over the event log: ``none``, ``median`` (Vizier's and Optuna's median
stopping rule) and ``asha`` (asynchronous successive halving, Li et al. 2020).

A rule's state folds three things in log order: a child's progress (epoch, validation accuracy), a child
that completed, and a child whose run ended otherwise (failed, stopped, expired, released: a retry starts
its curve again). ``progress`` returns the new state and the decision for that very report, so a replay
of the log re-derives every decision exactly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from evolution.algorithms import AlgorithmError


class StoppingError(AlgorithmError):
    """Early-stopping settings a rule refuses; the message names the key."""


@dataclass(frozen=True, slots=True)
class Decision:
    stop: bool
    reason: str = ""


CONTINUE = Decision(False)


@dataclass(frozen=True, slots=True)
class StoppingSettings:
    """The ``early_stopping`` section of an experiment, validated, with every key's default.

    ``rule``: none | median | asha. ``min_epochs`` (median): no decision before this epoch (1).
    ``min_completed`` (median): no decision at epoch e before this many completed children reached e (5).
    ``reduction_factor`` (asha): eta, the fraction 1/eta that goes on at each rung (3). ``min_budget``
    (asha): the first rung's epoch; later rungs at min_budget x eta^k (1). ``join_population``: a stopped
    child enters the population with its partial fitness, as in ASHA (false: it never does).
    ``count_towards_budget``: a stopped child counts towards C (true).
    """

    rule: str = "none"
    min_epochs: int = 1
    min_completed: int = 5
    reduction_factor: int = 3
    min_budget: int = 1
    join_population: bool = False
    count_towards_budget: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "min_epochs": self.min_epochs, "min_completed": self.min_completed,
                "reduction_factor": self.reduction_factor, "min_budget": self.min_budget,
                "join_population": self.join_population, "count_towards_budget": self.count_towards_budget}


RULES = ("none", "median", "asha")


def parse_stopping(spec: Any) -> StoppingSettings:
    """The settings of an ``early_stopping`` mapping (or a rule name); StoppingError for anything else."""
    if spec is None:
        return StoppingSettings()
    if isinstance(spec, str):
        spec = {"rule": spec}
    if not isinstance(spec, Mapping):
        raise StoppingError(f"early_stopping must be a rule name or a mapping, got {str(spec)[:60]!r}")
    known = set(StoppingSettings.__dataclass_fields__)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise StoppingError(f"early_stopping has unknown keys: {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    rule = spec.get("rule", "none")
    if rule not in RULES:
        raise StoppingError(f"early_stopping rule must be one of {', '.join(RULES)}, got {str(rule)[:40]!r}")
    values: dict[str, Any] = {"rule": rule}
    for key, low in (("min_epochs", 1), ("min_completed", 1), ("reduction_factor", 2), ("min_budget", 1)):
        if key in spec:
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1_000_000:
                raise StoppingError(f"early_stopping {key} must be an integer of at least {low}, got {value!r}")
            values[key] = value
    for key in ("join_population", "count_towards_budget"):
        if key in spec:
            if not isinstance(spec[key], bool):
                raise StoppingError(f"early_stopping {key} must be true or false, got {spec[key]!r}")
            values[key] = spec[key]
    return StoppingSettings(**values)


@dataclass(frozen=True, slots=True)
class StoppingState:
    """What the rules need of the log so far.

    ``running``: the best accuracy so far of each child in flight, per epoch reported. ``completed``: per
    epoch, the best-so-far accuracy of every completed child that reached it (the median rule's pool).
    ``rungs``: per rung epoch, every accuracy recorded there, in log order (ASHA's competitors).
    """

    running: Mapping[int, Mapping[int, float]] = field(default_factory=dict)
    completed: Mapping[int, tuple[float, ...]] = field(default_factory=dict)
    rungs: Mapping[int, tuple[float, ...]] = field(default_factory=dict)


def _rung_epochs(settings: StoppingSettings, epoch: int) -> bool:
    r = settings.min_budget
    while r < epoch:
        r *= settings.reduction_factor
    return r == epoch


def progress(settings: StoppingSettings, state: StoppingState, seq: int, epoch: int,
             accuracy: float | None) -> tuple[StoppingState, Decision]:
    """Fold a progress report of child ``seq`` and decide whether it goes on."""
    if accuracy is None or not math.isfinite(accuracy):
        return state, CONTINUE
    curve = dict(state.running.get(seq, {}))
    best = max([accuracy, *(v for e, v in curve.items() if e <= epoch)])
    curve[epoch] = best
    running = {**state.running, seq: curve}
    new = replace(state, running=running)
    if settings.rule == "median":
        pool = state.completed.get(epoch, ())
        if epoch < settings.min_epochs or len(pool) < settings.min_completed:
            return new, CONTINUE
        median = statistics.median(pool)
        if best < median:
            return new, Decision(True, f"median rule: best accuracy {best:.4g} by epoch {epoch} is below the "
                                       f"median {median:.4g} of {len(pool)} completed children")
        return new, CONTINUE
    if settings.rule == "asha" and _rung_epochs(settings, epoch):
        competitors = (*state.rungs.get(epoch, ()), accuracy)
        new = replace(new, rungs={**state.rungs, epoch: competitors})
        # Optuna's SuccessiveHalvingPruner promotion rule: in the top 1/eta of everyone at this rung so far.
        top = max(0, len(competitors) // settings.reduction_factor - 1)
        cut = sorted(competitors, reverse=True)[top]
        if accuracy < cut:
            return new, Decision(True, f"asha: accuracy {accuracy:.4g} at rung epoch {epoch} is not in the top "
                                       f"1/{settings.reduction_factor} of {len(competitors)} (needs {cut:.4g})")
    return new, CONTINUE


def completed(state: StoppingState, seq: int) -> StoppingState:
    """Child ``seq`` completed: its curve joins the pool the median rule compares with."""
    curve = state.running.get(seq)
    running = {k: v for k, v in state.running.items() if k != seq}
    if not curve:
        return replace(state, running=running)
    pool = dict(state.completed)
    for epoch, best in curve.items():
        pool[epoch] = (*pool.get(epoch, ()), best)
    return StoppingState(running, pool, state.rungs)


def ended(state: StoppingState, seq: int) -> StoppingState:
    """Child ``seq`` ended without completing (or its lease was handed back): its running curve is dropped."""
    if seq not in state.running:
        return state
    return replace(state, running={k: v for k, v in state.running.items() if k != seq})
