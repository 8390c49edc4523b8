"""Replay: fold an experiment's event log through the pure core and check every stored proposal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from evolution.algorithms import Algorithm, Member, Proposal
from evolution.rng import rng_for


@dataclass(frozen=True, slots=True)
class Proposed:
    """Proposal ``seq`` was made with this genome fingerprint and parent."""

    seq: int
    fingerprint: str
    parent_seq: int | None = None
    event_seq: int = 0


@dataclass(frozen=True, slots=True)
class Completed:
    """Proposal ``seq`` completed with these objectives."""

    seq: int
    fitness: float
    accuracy: float
    latency_ms: float | None = None
    event_seq: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """Proposal ``seq`` failed for good (never enters the population)."""

    seq: int
    event_seq: int = 0


@dataclass(frozen=True, slots=True)
class Seeded:
    """A completed member copied into the population as is (a forked experiment starts with these)."""

    seq: int
    genome: Any
    fitness: float
    accuracy: float
    latency_ms: float | None = None
    event_seq: int = 0


Event = Proposed | Completed | Failed | Seeded


@dataclass(frozen=True, slots=True)
class ReplayMismatch:
    """The first place where the log disagrees with what the core derives."""

    event_seq: int
    proposal_seq: int
    expected: str
    stored: str

    def describe(self) -> str:
        return (
            f"event {self.event_seq}: proposal {self.proposal_seq} re-derives as {self.expected} "
            f"but the log stores {self.stored}"
        )


@dataclass(frozen=True, slots=True)
class ReplayState:
    """The algorithm's state and derived proposals after folding a prefix of the log."""

    state: Any
    population: tuple[Member, ...]
    proposals: dict[int, Proposal]
    completed: int
    failed: int
    mismatch: ReplayMismatch | None


def fold(algorithm: Algorithm[Any], seed: int, events: Iterable[Event], stop_at_mismatch: bool = True) -> ReplayState:
    """Fold events in log order: re-derive each proposal from the state it saw and ``rng_for(seed, seq)``."""
    state = algorithm.initial()
    proposals: dict[int, Proposal] = {}
    completed = failed = 0
    mismatch: ReplayMismatch | None = None
    for event in events:
        if isinstance(event, Proposed):
            derived, state = algorithm.propose(state, event.seq, rng_for(seed, event.seq))
            proposals[event.seq] = derived
            stored = (event.fingerprint, event.parent_seq)
            if mismatch is None and (derived.genome.fingerprint, derived.parent_seq) != stored:
                mismatch = ReplayMismatch(
                    event.event_seq,
                    event.seq,
                    f"{derived.genome.fingerprint} (parent {derived.parent_seq})",
                    f"{event.fingerprint} (parent {event.parent_seq})",
                )
                if stop_at_mismatch:
                    break
        elif isinstance(event, Completed):
            proposal = proposals.get(event.seq)
            if proposal is None:
                if mismatch is None:
                    mismatch = ReplayMismatch(event.event_seq, event.seq, "a proposal before completion", "none")
                if stop_at_mismatch:
                    break
                continue
            member = Member(event.seq, proposal.genome, event.fitness, event.accuracy, event.latency_ms)
            state = algorithm.observe(state, member)
            completed += 1
        elif isinstance(event, Seeded):
            seeded = Member(event.seq, event.genome, event.fitness, event.accuracy, event.latency_ms)
            state = algorithm.observe(state, seeded)
            completed += 1
        else:
            failed += 1
    return ReplayState(state, algorithm.population(state), proposals, completed, failed, mismatch)


def verify(algorithm: Algorithm[Any], seed: int, events: Iterable[Event]) -> ReplayMismatch | None:
    """None when every stored proposal re-derives exactly; otherwise the first mismatch."""
    return fold(algorithm, seed, events).mismatch
