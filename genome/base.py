"""The genome protocol shared by every search space: validation errors, canonical JSON, fingerprints,
and the decision-sequence view of a genome."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from domain.errors import AmoebaError


class GenomeError(AmoebaError, ValueError):
    """A genome (or its JSON) is malformed; the message says what is wrong."""


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages quote what they were given, which may be huge."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, so equal genomes serialize to equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint_of(space: str, payload: Any) -> str:
    """A stable 16-hex-digit fingerprint of a genome's canonical JSON, namespaced by its space."""
    digest = hashlib.sha256(f"{space}:{canonical_json(payload)}".encode()).hexdigest()
    return digest[:16]


@runtime_checkable
class Genome(Protocol):
    """A frozen, hashable architecture description.

    Contract: ``to_json()`` returns plain data that the owning space's ``from_json`` turns back into an
    equal genome; ``fingerprint`` is a pure function of that JSON; ``space`` names the owning space.
    """

    @property
    def space(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


G_co = TypeVar("G_co", bound=Genome, covariant=True)


@dataclass(frozen=True, slots=True)
class Decision:
    """One categorical choice in a genome's decision sequence: ``choices`` options of a ``kind``.

    Decisions of one kind share a vocabulary (a controller's embedding and softmax head); their number
    of choices may differ from place to place (the k-th combination of a cell may read 2 + k states).
    """

    kind: str
    choices: int


class SearchSpace(Protocol[G_co]):
    """A family of genomes: sampling, decoding from JSON (which validates), and the decision view.

    ``decisions(genome)`` writes a genome as a sequence of choices; ``next_decision(prefix)`` is the
    decision that follows ``prefix`` (None once the sequence is complete), so the number of choices may
    depend on earlier decisions; ``from_decisions(seq)`` builds the genome back. For every sampled
    genome ``from_decisions(decisions(g)) == g``.
    """

    name: str

    def sample(self, rng: random.Random) -> G_co: ...

    def from_json(self, data: Any) -> G_co: ...

    def decisions(self, genome: Any) -> tuple[int, ...]: ...

    def next_decision(self, prefix: Sequence[int]) -> Decision | None: ...

    def from_decisions(self, decisions: Sequence[int]) -> G_co: ...


def check_decisions(space: SearchSpace[Any], decisions: Sequence[int]) -> None:
    """Raise GenomeError unless ``decisions`` is a complete, in-range sequence of ``space``."""
    for i in range(len(decisions) + 1):
        nxt = space.next_decision(decisions[:i])
        if i == len(decisions):
            if nxt is not None:
                raise GenomeError(f"decision sequence of {space.name} is incomplete after {i} decisions")
            return
        if nxt is None:
            raise GenomeError(f"decision sequence of {space.name} has {len(decisions) - i} decisions too many")
        value = decisions[i]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < nxt.choices:
            raise GenomeError(f"decision {i} ({nxt.kind}) must be in 0..{nxt.choices - 1}, got {shown(value)}")
