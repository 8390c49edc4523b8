"""Final training: the "final" experiment that trains a search's best genomes again at full size.

``amoeba retrain`` picks the top K distinct genomes of a finished (or running) search and creates an
experiment of the ``fixed`` algorithm over them, with a final-training preset (the whole training split,
scored on the test split) and every artifact kept. The new experiment is work like any other: the same
workers lease it, ``status``, ``compare`` and the exports show it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import spaces
from domain import ExperimentSpec, Individual, InvalidArgument
from orchestrator.config import parse_spec

MAX_TOP = 100


@dataclass(frozen=True, slots=True)
class Pick:
    """One genome to retrain and where it came from (``source`` experiment, its proposal number)."""

    source: str
    seq: int | None
    fingerprint: str
    genome_json: str

    @property
    def label(self) -> str:
        return f"{self.source}#{self.seq}" if self.seq is not None else self.source


def top_distinct(individuals: Iterable[Individual], k: int) -> list[Individual]:
    """The ``k`` completed individuals with the highest fitness, one per genome (a search may evaluate the
    same genome more than once; retraining it twice teaches nothing). Ties: the earlier proposal."""
    if not 1 <= k <= MAX_TOP:
        raise InvalidArgument(f"--top must be between 1 and {MAX_TOP}, got {k}")
    done = [i for i in individuals if i.state == "completed" and i.fitness is not None]
    done.sort(key=lambda i: (-(i.fitness or 0.0), i.proposal_seq))
    picked: list[Individual] = []
    seen: set[str] = set()
    for ind in done:
        if ind.fingerprint not in seen:
            seen.add(ind.fingerprint)
            picked.append(ind)
        if len(picked) == k:
            break
    return picked


def final_spec(space: str, picks: Sequence[Pick], *, name: str, preset: str | None = None,
               objective: dict[str, Any] | None = None, seed: int = 0,
               training: dict[str, Any] | None = None) -> ExperimentSpec:
    """The validated spec of the final experiment ``name`` training ``picks`` once each with ``preset``
    (default: the space's final preset), scored by ``objective`` (the search's, so fitness compares)."""
    if not picks:
        raise InvalidArgument("nothing to retrain: the experiment has no completed individual")
    chosen = preset or spaces.get(space).final_preset
    if chosen is None:
        raise InvalidArgument(f"the {space} space has no default final-training preset; pass --preset "
                              "(tiny-final, amoebanet-final, or one of yours)")
    config = {
        "name": name, "space": space, "population": len(picks), "sample": 1, "evaluations": len(picks),
        "seed": seed,
        "algorithm": {"name": "fixed", "genomes": [json.loads(p.genome_json) for p in picks],
                      "sources": [p.label for p in picks]},
        "objective": objective or {"kind": "accuracy"},
        "training": {**(training or {}), "preset": chosen, "split": "final"},
        # A final model is what the search was for: nothing is deleted; no early stopping, no pausing on the
        # first failures (a full-size training that runs out of memory says so in its failure reason).
        "artifacts": {"keep": "all"},
        "max_consecutive_failures": 3 * len(picks) + 3,
    }
    return parse_spec(config)


def source_of(spec: ExperimentSpec) -> dict[str, str]:
    """fingerprint -> source label of a final experiment's genomes (``{}`` for any other experiment)."""
    if spec.algorithm != "fixed":
        return {}
    import spaces

    space = spaces.get(spec.space)
    genomes = spec.algorithm_options.get("genomes", [])
    sources = spec.algorithm_options.get("sources", [])
    return {space.parse(g).fingerprint: s for g, s in zip(genomes, sources, strict=False)}
