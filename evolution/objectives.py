"""Fitness from metrics: accuracy alone, the MnasNet latency reward, an on-chip bonus, Pareto fronts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.errors import AmoebaError


class ObjectiveError(AmoebaError, ValueError):
    """An objective spec is malformed."""


@dataclass(frozen=True, slots=True)
class Objective:
    """How a completed evaluation's metrics become one scalar fitness (higher is better).

    kind ``accuracy``: fitness = accuracy.
    kind ``mnas``: fitness = accuracy * (latency / target_ms) ** w, with w = ``soft_exponent`` below the
    target and ``hard_exponent`` above it (w = -0.07 both: soft; hard_exponent = -1: a hard constraint).
    ``on_chip_bonus`` multiplies fitness by (1 + bonus) when the model's parameters fit the Edge TPU cache.
    ``pareto``: parent selection picks uniformly from the sample's non-dominated (accuracy, latency) set;
    fitness stays accuracy for reporting. ``max_latency_ms``: children over it are rejected before training.
    ``latency``: the network size and device latency is estimated for (``cells``, ``filters``,
    ``input_size``, ``num_classes``, ``device``, ``clock_mhz``, ``dataset``), as sorted key/value pairs;
    the orchestrator fills the space's defaults.
    """

    kind: str = "accuracy"
    target_ms: float | None = None
    soft_exponent: float = -0.07
    hard_exponent: float = -0.07
    on_chip_bonus: float = 0.0
    max_latency_ms: float | None = None
    latency: tuple[tuple[str, Any], ...] = ()

    @property
    def needs_latency(self) -> bool:
        """Whether fitness or selection depends on latency (then every result must carry one)."""
        return self.kind in ("mnas", "pareto") or bool(self.on_chip_bonus) or self.max_latency_ms is not None

    def fitness(self, accuracy: float, latency_ms: float | None = None, fits_on_chip: bool | None = None) -> float:
        value = accuracy
        if self.kind == "mnas":
            if latency_ms is None or self.target_ms is None:
                raise ObjectiveError("the mnas objective needs a latency and a target")
            ratio = max(latency_ms, 1e-9) / self.target_ms
            w = self.soft_exponent if ratio <= 1.0 else self.hard_exponent
            value = accuracy * ratio**w
        if self.on_chip_bonus and fits_on_chip:
            value *= 1.0 + self.on_chip_bonus
        return value

    @property
    def selection(self) -> str:
        return "pareto" if self.kind == "pareto" else "best"

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind}
        if self.kind == "mnas":
            spec.update(target_ms=self.target_ms, soft_exponent=self.soft_exponent, hard_exponent=self.hard_exponent)
        if self.on_chip_bonus:
            spec["on_chip_bonus"] = self.on_chip_bonus
        if self.max_latency_ms is not None:
            spec["max_latency_ms"] = self.max_latency_ms
        if self.latency:
            spec["latency"] = dict(self.latency)
        return spec


def _number(spec: dict[str, Any], key: str, default: float | None) -> float | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ObjectiveError(f"objective {key} must be a finite number, got {value!r}")
    return float(value)


def build_objective(spec: Any) -> Objective:
    """Parse an objective spec such as ``{"kind": "mnas", "target_ms": 2.0, "hard": true}``."""
    if spec is None:
        return Objective()
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        raise ObjectiveError(f"objective must be a name or an object, got {spec!r}")
    known = {"kind", "target_ms", "soft_exponent", "hard_exponent", "hard", "on_chip_bonus", "max_latency_ms", "latency"}
    unknown = set(spec) - known
    if unknown:
        raise ObjectiveError(f"objective has unknown keys: {', '.join(sorted(unknown))}")
    kind = spec.get("kind", "accuracy")
    if kind not in ("accuracy", "mnas", "pareto"):
        raise ObjectiveError(f"objective kind must be accuracy, mnas or pareto, got {kind!r}")
    target = _number(spec, "target_ms", None)
    if kind == "mnas" and (target is None or target <= 0):
        raise ObjectiveError("the mnas objective needs a positive target_ms")
    soft = _number(spec, "soft_exponent", -0.07)
    hard_default = -1.0 if spec.get("hard") else soft
    hard = _number(spec, "hard_exponent", hard_default)
    bonus = _number(spec, "on_chip_bonus", 0.0)
    max_lat = _number(spec, "max_latency_ms", None)
    if max_lat is not None and max_lat <= 0:
        raise ObjectiveError("max_latency_ms must be positive")
    assert soft is not None and hard is not None and bonus is not None
    latency = spec.get("latency") or {}
    if not isinstance(latency, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str | int | float)) for k, v in latency.items()
    ):
        raise ObjectiveError("objective latency must be a mapping of setting names to plain values")
    return Objective(kind, target, soft, hard, bonus, max_lat, tuple(sorted(latency.items())))


def pareto_flags(points: Sequence[tuple[float, float | None]]) -> list[bool]:
    """For (accuracy, latency_ms) points: True where no other point dominates (accuracy up, latency down).

    A point is dominated when another is at least as accurate and at least as fast and strictly better
    in one; equal points do not dominate each other, so duplicates on the front all stay on it. A
    missing latency counts as infinitely slow. O(n log n): one pass in latency order.
    """
    lat = [math.inf if p[1] is None else float(p[1]) for p in points]
    order = sorted(range(len(points)), key=lambda i: (lat[i], -points[i][0]))
    flags = [False] * len(points)
    best_acc = -math.inf
    best_at: tuple[float, float] | None = None
    for i in order:
        acc = points[i][0]
        if acc > best_acc:
            flags[i] = True
            best_acc, best_at = acc, (acc, lat[i])
        elif best_at is not None and (acc, lat[i]) == best_at:
            flags[i] = True
    return flags


def pareto_front_indices(points: Sequence[tuple[float, float | None]]) -> list[int]:
    """Indices of the non-dominated (accuracy up, latency down) points, in input order (see ``pareto_flags``)."""
    return [i for i, on in enumerate(pareto_flags(points)) if on]
