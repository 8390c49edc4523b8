"""The genome protocol shared by every search space: validation errors, canonical JSON, fingerprints."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Protocol, TypeVar, runtime_checkable


class GenomeError(ValueError):
    """A genome (or its JSON) is malformed; the message says what is wrong."""


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


class SearchSpace(Protocol[G_co]):
    """A family of genomes: sampling, decoding from JSON (which validates), and a stable name."""

    name: str

    def sample(self, rng: random.Random) -> G_co: ...

    def from_json(self, data: Any) -> G_co: ...
