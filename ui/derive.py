"""Pure derivations shared by the status producers and the plots: the front, best-so-far, ages, lineage."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evolution.objectives import pareto_flags


def front_line(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (accuracy, latency_ms) points sorted by latency, duplicates removed."""
    flags = pareto_flags(points)
    return sorted({p for p, on in zip(points, flags, strict=True) if on}, key=lambda p: (p[1], -p[0]))


def best_so_far(series: Iterable[tuple[float, float]]) -> list[list[float]]:
    """``[x, fitness]`` at each strict improvement of (x, fitness) pairs taken in x order."""
    out: list[list[float]] = []
    best = float("-inf")
    for x, f in sorted(series, key=lambda p: p[0]):
        if f > best:
            best = f
            out.append([x, f])
    return out


def histogram(values: Sequence[int], bins: int) -> tuple[list[int], int]:
    """Counts of non-negative integers in ``bins`` equal bins over 0..max; also the bin width."""
    if not values or bins < 1:
        return [], 1
    top = max(values)
    width = max(1, -(-(top + 1) // bins))
    counts = [0] * min(bins, -(-(top + 1) // width))
    for v in values:
        counts[min(v // width, len(counts) - 1)] += 1
    return counts, width


def lineage(records: Iterable[Mapping[str, Any]], proposal_seq: int) -> list[Mapping[str, Any]]:
    """The ancestors of an individual by ``parent_seq``, itself first, down to a random genome.

    Raises KeyError when ``proposal_seq`` (or a parent on the way) is not among the records.
    """
    by_seq = {int(r["proposal_seq"]): r for r in records}
    chain: list[Mapping[str, Any]] = []
    seen: set[int] = set()
    seq: int | None = proposal_seq
    while seq is not None:
        if seq in seen:  # a cycle can only come from corrupt data; stop rather than loop forever
            raise ValueError(f"parent cycle at proposal {seq}")
        seen.add(seq)
        rec = by_seq[seq]
        chain.append(rec)
        parent = rec.get("parent_seq")
        seq = None if parent is None else int(parent)
    return chain


#: Algorithms whose members leave when a proposal is made (a tournament's loser), not when one completes.
KILLING_ALGORITHMS = ("pairwise",)


def population_timeline(
    records: Iterable[Mapping[str, Any]], population_size: int, algorithm: str = "aging",
    departures: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """The population after every completion, replayed from completed records.

    Completed records (``state == "completed"`` with a fitness) are taken in ``completion_rank``
    order (``completed_at``, then ``proposal_seq`` when absent). ``aging`` and ``random`` keep the
    ``population_size`` most recent, and so does any other algorithm (a plug-in, ``fixed``, a learned policy,
    whose "population" is the recent window the status view shows); ``non-aging`` drops the worst;
    ``pairwise`` members leave when a tournament kills them: ``departures`` maps each killed member's proposal number to the number of
    completions logged before its kill (the log's ``killed`` events). One row per completion.
    """
    if population_size < 1:
        raise ValueError("population_size must be positive")
    if algorithm in KILLING_ALGORITHMS:
        return _killed_timeline(records, departures or {})
    done = [r for r in records if r.get("state", "completed") == "completed" and r.get("fitness") is not None]
    done.sort(key=lambda r: (_rank_key(r.get("completion_rank")), _rank_key(r.get("completed_at")), r["proposal_seq"]))
    members: list[Mapping[str, Any]] = []  # in completion order
    by_fitness: list[tuple[float, int]] = []  # sorted (fitness, proposal_seq)
    rows: list[dict[str, Any]] = []
    for rank, r in enumerate(done):
        f, seq = float(r["fitness"]), int(r["proposal_seq"])
        members.append(r)
        bisect.insort(by_fitness, (f, seq))
        if len(members) > population_size:
            if algorithm == "non-aging":
                _, gone_seq = by_fitness.pop(0)
                members = [m for m in members if int(m["proposal_seq"]) != gone_seq]
            else:
                gone = members.pop(0)
                by_fitness.remove((float(gone["fitness"]), int(gone["proposal_seq"])))
        n = len(by_fitness)
        # by_fitness is sorted, so the median is read off the middle rather than re-sorted every row.
        median = by_fitness[n // 2][0] if n % 2 else (by_fitness[n // 2 - 1][0] + by_fitness[n // 2][0]) / 2
        rows.append({
            "completion_rank": rank,
            "proposal_seq": seq,
            "completed_at": r.get("completed_at"),
            "fitness": f,
            "size": n,
            "best": by_fitness[-1][0],
            "median": median,
            "worst": by_fitness[0][0],
            "best_proposal_seq": by_fitness[-1][1],
        })
    return rows


def _rank_key(value: Any) -> float:
    return float("inf") if value is None else float(value)


def _killed_timeline(records: Iterable[Mapping[str, Any]], departures: Mapping[int, int]) -> list[dict[str, Any]]:
    done = [r for r in records if r.get("state", "completed") == "completed" and r.get("fitness") is not None]
    done.sort(key=lambda r: (_rank_key(r.get("completion_rank")), _rank_key(r.get("completed_at")), r["proposal_seq"]))
    alive: dict[int, float] = {}
    rows: list[dict[str, Any]] = []
    for rank, r in enumerate(done):
        f, seq = float(r["fitness"]), int(r["proposal_seq"])
        alive[seq] = f
        # Members killed by proposals made before this completion was logged are gone.
        for gone in [s for s in alive if departures.get(s, rank + 1) <= rank]:
            del alive[gone]
        ordered = sorted((v, s) for s, v in alive.items())
        n = len(ordered)
        median = (ordered[n // 2][0] if n % 2 else (ordered[n // 2 - 1][0] + ordered[n // 2][0]) / 2) if n else None
        rows.append({
            "completion_rank": rank, "proposal_seq": seq, "completed_at": r.get("completed_at"), "fitness": f,
            "size": n, "best": ordered[-1][0] if n else None, "median": median,
            "worst": ordered[0][0] if n else None, "best_proposal_seq": ordered[-1][1] if n else None,
        })
    return rows
