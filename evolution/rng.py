"""Per-event randomness: the RNG of proposal k is a pure function of (experiment seed, k)."""

from __future__ import annotations

import hashlib
import random


def rng_for(seed: int, seq: int, stream: str = "propose") -> random.Random:
    """A fresh RNG for event ``seq`` of an experiment seeded ``seed``; independent of any other event."""
    digest = hashlib.blake2b(f"{stream}:{seed}:{seq}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))
