"""The status document (``amoeba status --json``): its field table and a checker (types: ``domain.status``).

The document is plain JSON so it can come from a server, a database or a replay at some event, and
the same renderers draw it. ``FIELDS`` is the single source of the schema's documentation: ui/README.md
shows it as a table, and a test keeps the two and the TypedDicts in step. Version 1; fields may be
added, never renamed or removed.
"""

# No ``from __future__ import annotations``: TypedDict needs real NotRequired objects for __required_keys__.
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.status import (  # noqa: F401  (re-exported: the views' one import)
    SCHEMA_VERSION,
    BestInfo,
    ParetoPoint,
    PopulationInfo,
    StatusSnapshot,
    TopEntry,
    WorkerEntry,
)


@dataclass(frozen=True, slots=True)
class Field:
    """One documented field: a dotted path (``[]`` marks list items), its JSON type, whether required, meaning."""

    path: str
    type: str
    required: bool
    meaning: str


FIELDS: tuple[Field, ...] = (
    Field("schema", "integer", True, "schema version of this document (1)"),
    Field("experiment", "string", True, "experiment name"),
    Field("state", "string", True, "`running`, `paused` or `done`"),
    Field("completed", "integer", True, "completed evaluations"),
    Field("failed", "integer", True, "individuals marked failed (never enter the population)"),
    Field("rejected", "integer", True, "children rejected by the latency constraint (before training, or at their report)"),
    Field("target", "integer", True, "C: the experiment ends after this many completed evaluations"),
    Field("evaluations_per_hour", "number", True, "recent completion rate (0 when unknown)"),
    Field("eta_seconds", "number|null", True, "estimated seconds until `target`; null when the rate is 0"),
    Field("best", "object|null", True, "the best completed individual so far; null before the first"),
    Field("best.fingerprint", "string", True, "16-hex-digit genome fingerprint"),
    Field("best.accuracy", "number|null", True, "validation accuracy as reported"),
    Field("best.latency_ms", "number|null", True, "simulated Edge TPU latency in ms"),
    Field("best.fitness", "number", True, "the objective value the search maximises"),
    Field("best.proposal_seq", "integer", True, "proposal number of the individual"),
    Field("best.summary", "string", True, "one-line genome summary"),
    Field("population", "object", True, "the current population (the P most recently completed, or per algorithm)"),
    Field("population.size", "integer", True, "members now"),
    Field("population.best", "number|null", True, "best fitness in the population"),
    Field("population.median", "number|null", True, "median fitness in the population"),
    Field("population.worst", "number|null", True, "worst fitness in the population"),
    Field("population.ages", "integer[]", True, "age of each member: completions since it completed (0 = newest)"),
    Field("population.target_size", "integer", False, "P, the size the population grows to"),
    Field("best_so_far", "[number, number][]", True, "`[t, fitness]` at each improvement; t = seconds since the experiment was created"),
    Field("pareto", "object[]", True, "completed individuals with a latency (may be a sample); accuracy up, latency down"),
    Field("pareto[].fingerprint", "string", True, "genome fingerprint"),
    Field("pareto[].accuracy", "number", True, "validation accuracy"),
    Field("pareto[].latency_ms", "number", True, "simulated latency in ms"),
    Field("pareto[].on_front", "boolean", True, "not dominated (no other point is at least as accurate and as fast, and better in one)"),
    Field("top", "object[]", True, "the top-K completed individuals by fitness, best first"),
    Field("top[].proposal_seq", "integer", True, "proposal number"),
    Field("top[].fingerprint", "string", True, "genome fingerprint"),
    Field("top[].fitness", "number", True, "objective value"),
    Field("top[].accuracy", "number|null", True, "validation accuracy"),
    Field("top[].latency_ms", "number|null", True, "simulated latency in ms"),
    Field("top[].summary", "string", True, "one-line genome summary"),
    Field("top[].parent_seq", "integer|null", True, "proposal number of the parent; null for random genomes"),
    Field("top[].age", "integer", True, "completions since it completed"),
    Field("workers", "object[]", True, "workers seen by the orchestrator"),
    Field("workers[].worker_id", "string", True, "stable id chosen by the worker"),
    Field("workers[].host", "string", True, "host name the worker reported"),
    Field("workers[].alive", "boolean", True, "heard from within its lease timeout; false = lost"),
    Field("workers[].lease", "integer|null", True, "proposal number it is evaluating now; null when idle"),
    Field("workers[].last_heartbeat", "number|null", True, "unix seconds of its last request"),
    Field("workers[].evaluations", "integer", True, "evaluations it completed"),
    Field("generated_at", "number", False, "unix seconds when the snapshot was taken (heartbeat ages are relative to it)"),
    Field("seq", "integer", False, "last event sequence number included (replay `--at`)"),
    Field("leased", "integer", False, "individuals leased right now"),
    Field("queued", "integer", False, "individuals waiting for a worker (expired leases put back)"),
    Field("proposals", "integer", False, "proposals made so far"),
    Field("space", "string", False, "search space (`nasnet`, `nb201`, or a plug-in's)"),
    Field("algorithm", "string", False, "the search algorithm (`aging`, `non-aging`, `random`, ...)"),
    Field("paused_reason", "string|null", False, "why the experiment is paused (a user, or the circuit breaker); null otherwise"),
    Field("last_failure", "string|null", False, "the reason of the latest failure or rejection"),
    Field("stopped", "integer", False, "children the early-stopping rule stopped (with their partial accuracy)"),
    Field("saved_train_seconds", "number", False, "training seconds early stopping saved: the stopped children's shortfall against an average completed child"),
    Field("running", "object[]", False, "children in training now, with their last progress report"),
    Field("running[].proposal_seq", "integer", True, "proposal number"),
    Field("running[].worker_id", "string|null", True, "the worker training it"),
    Field("running[].epoch", "integer|null", True, "epochs trained, from its last progress report (null before one)"),
    Field("running[].accuracy", "number|null", True, "validation accuracy at that report"),
    Field("running[].seconds", "number|null", True, "training seconds at that report"),
    Field("consecutive_failures", "integer", False, "failures and rejections since the last completion (the circuit breaker pauses at the experiment's max_consecutive_failures)"),
)

_CHECKS: dict[str, Any] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "null": lambda v: v is None,
    "integer[]": lambda v: isinstance(v, list) and all(_CHECKS["integer"](x) for x in v),
    "object[]": lambda v: isinstance(v, list) and all(isinstance(x, Mapping) for x in v),
    "[number, number][]": lambda v: isinstance(v, list)
    and all(isinstance(p, list | tuple) and len(p) == 2 and all(_CHECKS["number"](x) for x in p) for p in v),
}


def _matches(value: Any, type_: str) -> bool:
    return any(_CHECKS[t](value) for t in type_.split("|"))


def _values(doc: Mapping[str, Any], path: str) -> list[tuple[str, Any, bool]]:
    """Every (concrete path, value, present) the dotted path names; list parts fan out over items."""
    parts = path.split(".")
    found: list[tuple[str, Any, bool]] = [("", doc, True)]
    for i, part in enumerate(parts):
        is_list = part.endswith("[]")
        key = part[:-2] if is_list else part
        nxt: list[tuple[str, Any, bool]] = []
        for where, node, present in found:
            if not present or not isinstance(node, Mapping):
                continue  # the parent's own check reports it missing, null or of the wrong type
            here = f"{where}.{key}" if where else key
            if key not in node:
                nxt.append((here, None, False))
            elif is_list and i < len(parts) - 1 and isinstance(node[key], list):
                nxt.extend((f"{here}[{j}]", item, True) for j, item in enumerate(node[key]))
            else:
                nxt.append((here, node[key], True))
        found = nxt
    return found


def snapshot_problems(doc: Any) -> list[str]:
    """Every way ``doc`` departs from the schema, one readable line each; empty when it conforms."""
    if not isinstance(doc, Mapping):
        return ["the status document must be a JSON object"]
    problems: list[str] = []
    for f in FIELDS:
        for where, value, present in _values(doc, f.path):
            if not present:
                if f.required:
                    problems.append(f"{where}: missing ({f.type})")
            elif not _matches(value, f.type):
                problems.append(f"{where}: expected {f.type}, got {value!r:.60}")
    return problems
