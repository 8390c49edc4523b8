"""The algorithm plug-in: a search algorithm is a fold over completed members plus a proposal rule.

The orchestrator, replay, the benchmarks and the simulator drive every algorithm through the one
``Algorithm`` protocol below; algorithms are looked up by name in a registry (built-ins here and in
``evolution.regularized``; third parties through the ``amoeba.algorithms`` entry-point group).
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, TypeVar

from domain.errors import AmoebaError
from genome import Genome, SearchSpace
from mutations import Mutation

Selection = Literal["best", "pareto"]
S = TypeVar("S")
ENTRY_POINT_GROUP = "amoeba.algorithms"


class AlgorithmError(AmoebaError, ValueError):
    """Unknown algorithm, or settings an algorithm refuses; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Member:
    """A completed individual: its proposal number, genome, scalar fitness and raw objectives."""

    seq: int
    genome: Genome
    fitness: float
    accuracy: float = 0.0
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """A child to evaluate: proposal number, genome, the parent's proposal number and how it was made."""

    seq: int
    genome: Genome
    parent_seq: int | None
    mutation: str


class Algorithm(Protocol[S]):
    """A search algorithm as a pure fold. The contract every implementation keeps:

    - Its state is a value: ``initial()``, then ``observe(state, member)`` for every completed member in
      completion order (the order the orchestrator logs completions in, whatever order workers finish).
      ``observe`` and ``propose`` return new states and never change the ones they are given, so the
      orchestrator may cache a state and replay may refold the log to the very same state. No state
      is ever stored: it is always re-derivable from the log.
    - ``propose(state, seq, rng)`` makes proposal ``seq`` from the state as it stands after the
      completions logged before it. All randomness comes from ``rng`` (``rng_for(seed, seq)``), so the
      proposal depends on (state, seq, seed) alone: no clock, no I/O, no global random generator, no
      iteration over unordered containers. It may return a changed state (a selection rule that kills
      a member when it picks, as pairwise tournaments do); most return the state unchanged.
    - ``population(state)`` is the members the algorithm keeps now, oldest first (what the status view
      shows and the store flags as ``in_population``).
    - ``restore(members)`` rebuilds the state from a stored population alone when that is the whole
      state (aging evolution), so a restarted server need not refold the history; None means the state
      needs the whole history (a learned policy), and the caller refolds every completion.
    """

    name: str

    def initial(self) -> S: ...

    def observe(self, state: S, member: Member) -> S: ...

    def propose(self, state: S, seq: int, rng: random.Random) -> tuple[Proposal, S]: ...

    def population(self, state: S) -> tuple[Member, ...]: ...

    def restore(self, members: Sequence[Member]) -> S | None: ...


@dataclass(frozen=True, slots=True)
class AlgorithmContext:
    """What an algorithm is built from: the space (sampling and the decision view), the experiment's
    mutation, P, S, the parent-selection rule, the seed and the algorithm's own ``options``."""

    space: SearchSpace[Any]
    mutation: Mutation
    population_size: int = 100
    sample_size: int = 25
    selection: Selection = "best"
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: float, low: float, high: float) -> float:
        """A finite numeric option in [low, high], or AlgorithmError naming it."""
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise AlgorithmError(f"algorithm option {key} must be a finite number, got {value!r}")
        if not low <= value <= high:
            raise AlgorithmError(f"algorithm option {key} must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def choice(self, key: str, default: str, allowed: Sequence[str]) -> str:
        value = self.options.get(key, default)
        if value not in allowed:
            raise AlgorithmError(f"algorithm option {key} must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    def check_options(self, known: Sequence[str]) -> None:
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            expected = ", ".join(known) if known else "none"
            raise AlgorithmError(f"unknown algorithm option(s) {', '.join(unknown)}; expected {expected}")


AlgorithmFactory = Callable[[AlgorithmContext], Algorithm[Any]]

#: name -> "module:factory" of the algorithms Amoeba ships (imported on first use).
BUILTIN: dict[str, str] = {
    "aging": "evolution.regularized:aging",
    "non-aging": "evolution.regularized:non_aging",
    "random": "evolution.regularized:random_search",
    "pairwise": "evolution.pairwise:pairwise",
    "fixed": "evolution.fixed:fixed",
    "rl": "evolution.reinforce:reinforce",
    "guided": "evolution.guided:guided",
}
_factories: dict[str, AlgorithmFactory] = {}


def _load() -> dict[str, AlgorithmFactory]:
    if _factories:
        return _factories
    found: dict[str, AlgorithmFactory] = {}
    for name, reference in BUILTIN.items():
        module, _, attribute = reference.partition(":")
        found[name] = getattr(import_module(module), attribute)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plug-in must not take the built-ins down with it
            warnings.warn(f"algorithm plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
    _factories.update(found)
    return _factories


def register_algorithm(name: str, factory: AlgorithmFactory) -> None:
    """Add an algorithm at run time (installed packages use the entry-point group)."""
    factories = _load()
    if name in factories and factories[name] is not factory:
        raise AlgorithmError(f"an algorithm named {name!r} is registered already")
    factories[name] = factory


def algorithm_names() -> tuple[str, ...]:
    return tuple(sorted(_load()))


def build_algorithm(name: Any, context: AlgorithmContext) -> Algorithm[Any]:
    """The algorithm ``name`` built for ``context``; AlgorithmError for an unknown name or bad options."""
    factory = _load().get(name) if isinstance(name, str) else None
    if factory is None:
        raise AlgorithmError(f"unknown algorithm {str(name)[:60]!r}; expected one of {', '.join(algorithm_names())}")
    return factory(context)


@dataclass(frozen=True, slots=True)
class EvolutionConfig:
    """An experiment's search setup: P, S, the algorithm and its options, the seed, the selection rule."""

    population_size: int = 100
    sample_size: int = 25
    algorithm: str = "aging"
    seed: int = 0
    selection: Selection = "best"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.population_size < 1:
            raise AlgorithmError(f"population_size must be >= 1, got {self.population_size}")
        if self.sample_size < 1:
            raise AlgorithmError(f"sample_size must be >= 1, got {self.sample_size}")
        if self.algorithm not in algorithm_names():
            raise AlgorithmError(f"algorithm must be one of {', '.join(algorithm_names())}, got {self.algorithm!r}")
        if self.selection not in ("best", "pareto"):
            raise AlgorithmError(f"selection must be 'best' or 'pareto', got {self.selection!r}")

    def build(self, space: SearchSpace[Any], mutation: Mutation) -> Algorithm[Any]:
        context = AlgorithmContext(space, mutation, self.population_size, self.sample_size, self.selection,
                                   self.seed, self.options)
        return build_algorithm(self.algorithm, context)
