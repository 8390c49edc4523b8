"""The ``fixed`` algorithm: train a given list of genomes once each (final training of a search's winners).

``amoeba retrain`` creates an experiment with it: its options name the genomes (canonical JSON data) and,
for the record, where each came from. Proposal k is genome k; the state is the members completed so far,
all kept as the population (the final models are all of interest). When one of them fails for good, the
next proposal (past the list) is the first genome not completed yet, so the experiment still ends with
each trained once; a genome that fails again and again pauses the experiment through the circuit breaker.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evolution.algorithms import AlgorithmContext, AlgorithmError, Member, Proposal
from genome import Genome

Population = tuple[Member, ...]
#: How many genomes one fixed-list experiment may train (its options travel with every lease).
MAX_GENOMES = 1000


@dataclass(frozen=True, slots=True)
class FixedList:
    """Proposes ``genomes`` in order, each once; ``sources`` describe them (``"exp#seq"``)."""

    genomes: tuple[Genome, ...]
    sources: tuple[str, ...]
    name: str = "fixed"

    def initial(self) -> Population:
        return ()

    def observe(self, state: Population, member: Member) -> Population:
        return (*state, member)

    def propose(self, state: Population, seq: int, rng: random.Random) -> tuple[Proposal, Population]:
        index = seq
        if seq >= len(self.genomes):
            done = {m.genome.fingerprint for m in state}
            remaining = [i for i, g in enumerate(self.genomes) if g.fingerprint not in done]
            index = remaining[(seq - len(self.genomes)) % len(remaining)] if remaining else seq % len(self.genomes)
        return Proposal(seq, self.genomes[index], None, f"final training of {self.sources[index]}"), state

    def population(self, state: Population) -> Population:
        return state

    def restore(self, members: Sequence[Member]) -> Population:
        return tuple(members)


def fixed(context: AlgorithmContext) -> FixedList:
    """Options: ``genomes`` (a non-empty list of genome JSON objects of the experiment's space) and
    ``sources`` (as many strings naming where each came from; default ``genome k``)."""
    context.check_options(("genomes", "sources"))
    raw = context.options.get("genomes")
    if not isinstance(raw, list) or not raw:
        raise AlgorithmError("algorithm option genomes must be a non-empty list of genomes")
    if len(raw) > MAX_GENOMES:
        raise AlgorithmError(f"algorithm option genomes holds {len(raw)} genomes; at most {MAX_GENOMES}")
    genomes = []
    for k, data in enumerate(raw):
        if not isinstance(data, Mapping):
            raise AlgorithmError(f"algorithm option genomes[{k}] must be a genome object, got {str(data)[:60]!r}")
        try:
            genomes.append(context.space.from_json(dict(data)))
        except Exception as exc:  # each space raises its own validation error
            raise AlgorithmError(f"algorithm option genomes[{k}] is not a valid genome: {exc}") from None
    sources: Any = context.options.get("sources", [f"genome {k}" for k in range(len(genomes))])
    if not isinstance(sources, list) or len(sources) != len(genomes) or not all(isinstance(s, str) for s in sources):
        raise AlgorithmError("algorithm option sources must be a list of strings, one per genome")
    return FixedList(tuple(genomes), tuple(s[:120] for s in sources))
