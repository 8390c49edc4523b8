"""A third-party search space, installed the way a plug-in is: a package plus an ``amoeba.spaces`` entry point
(``toyspace-0.1.dist-info/entry_points.txt``). Nothing in Amoeba names it.

A genome is a row of 8 layer switches; a network stacks a 3x3 convolution for every switch that is on.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genome.base import Decision, GenomeError, check_decisions, fingerprint_of
from latency.builder import Net
from latency.ir import GRAPH_INPUT, Graph
from mutations.base import Mutated
from spaces import Space

WIDTH = 8


@dataclass(frozen=True, slots=True)
class Bits:
    bits: tuple[int, ...]

    @property
    def space(self) -> str:
        return "toy"

    def to_json(self) -> dict[str, Any]:
        return {"space": "toy", "bits": list(self.bits)}

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("toy", self.to_json())

    def summary(self) -> str:
        return "".join(map(str, self.bits))


class BitsCodec:
    name = "toy"

    def sample(self, rng: random.Random) -> Bits:
        return Bits(tuple(rng.randrange(2) for _ in range(WIDTH)))

    def from_json(self, data: Any) -> Bits:
        if not isinstance(data, dict) or data.get("space", "toy") != "toy":
            raise GenomeError("a toy genome is an object {'space': 'toy', 'bits': [0 or 1, ...]}")
        bits = data.get("bits")
        if not isinstance(bits, list) or len(bits) != WIDTH or any(b not in (0, 1) for b in bits):
            raise GenomeError(f"toy genome bits must be {WIDTH} zeros or ones")
        return Bits(tuple(int(b) for b in bits))

    def decisions(self, genome: Bits) -> tuple[int, ...]:
        return genome.bits

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return Decision("switch", 2) if len(prefix) < WIDTH else None

    def from_decisions(self, decisions: Sequence[int]) -> Bits:
        check_decisions(self, decisions)
        return Bits(tuple(decisions))


@dataclass(frozen=True, slots=True)
class Flip:
    """Flip one switch."""

    def __call__(self, genome: Any, rng: random.Random) -> Mutated:
        i = rng.randrange(WIDTH)
        bits = list(genome.bits)
        bits[i] ^= 1
        return Mutated(Bits(tuple(bits)), f"flip {i}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "flip"}


def lower(genome: Bits, network: Mapping[str, Any]) -> Graph:
    size, channels = network["input_size"], network["channels"]
    net = Net(f"toy {genome.summary()}", (size, size, 3))
    x = net.conv("stem", GRAPH_INPUT, channels, (3, 3))
    for i, on in enumerate(genome.bits):
        if on:
            x = net.conv(f"layer{i}", x, channels, (3, 3))
    return net.b.build(net.head(x, network["num_classes"]))


SPACE = Space(
    name="toy",
    description="eight layer switches (a plug-in example)",
    codec=BitsCodec(),
    mutations={"flip": Flip},
    default_mutation={"type": "flip"},
    network={"input_size": 32, "channels": 16, "num_classes": 10},
    lower=lower,
)


def evaluate(trial: Any) -> dict[str, float]:
    """A toy 'training': more switches on, more accurate (the user-evaluator side of the plug-in)."""
    return {"accuracy": 0.5 + sum(trial.genome.bits) / (4 * WIDTH)}
