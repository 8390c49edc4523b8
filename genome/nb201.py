"""The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 ops per edge, and its arch-string codec."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genome.base import Decision, GenomeError, check_decisions, fingerprint_of, shown

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: Edges in arch-string order: (to_node, from_node).
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

_ABBREV = {"none": "-", "skip_connect": "skip", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "avg"}


@dataclass(frozen=True, slots=True)
class NB201Genome:
    """Six edge ops, in the order of the arch string's edges."""

    ops: tuple[str, ...]

    @property
    def space(self) -> str:
        return "nb201"

    def edge_op(self, to_node: int, from_node: int) -> str:
        return self.ops[NB201_EDGES.index((to_node, from_node))]

    def to_arch_str(self) -> str:
        blocks = []
        for node in (1, 2, 3):
            parts = [f"{self.ops[i]}~{src}" for i, (dst, src) in enumerate(NB201_EDGES) if dst == node]
            blocks.append("|" + "|".join(parts) + "|")
        return "+".join(blocks)

    def to_json(self) -> dict[str, Any]:
        return {"space": "nb201", "arch": self.to_arch_str()}

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("nb201", self.to_json())

    def summary(self) -> str:
        return self.to_arch_str()


def parse_arch_str(text: Any) -> NB201Genome:
    """Decode ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; the inverse of ``NB201Genome.to_arch_str``."""
    if not isinstance(text, str):
        raise GenomeError(f"an NB201 arch string must be a string, got {type(text).__name__}")
    blocks = text.split("+")
    if len(blocks) != 3:
        raise GenomeError(f"NB201 arch string must have 3 '+'-separated node blocks, got {len(blocks)}: {shown(text)}")
    ops: list[str] = []
    for node, block in enumerate(blocks, start=1):
        if not (block.startswith("|") and block.endswith("|")) or len(block) < 2:
            raise GenomeError(f"node {node} block must be wrapped in '|': {shown(block)}")
        edges = block[1:-1].split("|")
        if len(edges) != node:
            raise GenomeError(f"node {node} must have {node} incoming edges, got {len(edges)}: {shown(block)}")
        for src, edge in enumerate(edges):
            op, sep, idx = edge.partition("~")
            if not sep or idx != str(src):
                raise GenomeError(f"node {node}, edge {src}: expected 'op~{src}', got {shown(edge)}")
            if op not in NB201_OPS:
                raise GenomeError(f"node {node}, edge {src}: unknown op {shown(op)}; expected one of {', '.join(NB201_OPS)}")
            ops.append(op)
    return NB201Genome(tuple(ops))


class NB201Space:
    """Sampling and decoding of NAS-Bench-201 genomes."""

    name = "nb201"

    def sample(self, rng: random.Random) -> NB201Genome:
        return NB201Genome(tuple(rng.choice(NB201_OPS) for _ in NB201_EDGES))

    def from_json(self, data: Any) -> NB201Genome:
        if isinstance(data, str):
            return parse_arch_str(data)
        if not isinstance(data, dict):
            raise GenomeError(f"an nb201 genome must be a JSON object or arch string, got {type(data).__name__}")
        if data.get("space", "nb201") != "nb201":
            raise GenomeError(f"genome is of space {shown(data.get('space'))}, not 'nb201'")
        unknown = set(data) - {"space", "arch"}
        if unknown:
            raise GenomeError(f"nb201 genome has unknown keys: {', '.join(sorted(unknown))}")
        if "arch" not in data:
            raise GenomeError("nb201 genome is missing 'arch'")
        return parse_arch_str(data["arch"])

    def all_genomes(self) -> list[NB201Genome]:
        """All 15,625 cells, in lexicographic op-index order."""
        import itertools

        return [NB201Genome(ops) for ops in itertools.product(NB201_OPS, repeat=len(NB201_EDGES))]

    # --- the decision view: one op per edge, in arch-string order --------------------------------------

    def decisions(self, genome: NB201Genome) -> tuple[int, ...]:
        return tuple(NB201_OPS.index(op) for op in genome.ops)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return Decision("op", len(NB201_OPS)) if len(prefix) < len(NB201_EDGES) else None

    def from_decisions(self, decisions: Sequence[int]) -> NB201Genome:
        check_decisions(self, decisions)
        return NB201Genome(tuple(NB201_OPS[d] for d in decisions))
