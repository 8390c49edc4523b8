"""The Large-Scale Evolution mutations (Real et al. 2017): one structural or learning-rate change per child.

Every operator returns a valid genome: new vertices and edges get fresh ids (everyone else keeps theirs,
so weight inheritance can find them), the input vertex is never touched, and the merge rule of
``genome.lse`` makes any shapes agree. An operator with nothing to act on (remove a convolution from a
network without one) leaves the genome as it is and says so in its description, as ``identity`` does.
``reset_weights`` leaves the genome as it is too: its description tells the trainer to start from scratch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from genome import Genome
from genome.lse import (
    ACTIVATIONS,
    CONV,
    IDENTITY,
    LR_GRID,
    MAX_CHANNELS,
    MAX_FILTER,
    MAX_ID,
    MAX_SKIPS,
    MAX_STRIDE,
    MAX_VERTICES,
    SKIP,
    SPACE_NAME,
    Edge,
    LSEGenome,
    Vertex,
    plan,
    replace_genome,
)
from mutations.base import Mutated, Mutation, MutationError

#: The description of the reset-weights mutation (a chain joins its steps' descriptions with "; ").
RESET_WEIGHTS = "reset_weights"
#: Quarter-octave steps an ``alter_learning_rate`` moves at most: a factor between 1/2 and 2, as the paper's
#: mutations keep new values near the old ones.
MAX_LR_STEPS = 4


def _require(genome: Genome) -> LSEGenome:
    if not isinstance(genome, LSEGenome):
        raise MutationError(f"this mutation applies to {SPACE_NAME} genomes, not {genome.space}")
    return genome


def _skip(name: str, genome: LSEGenome, why: str) -> Mutated:
    return Mutated(genome, f"{name}: not applicable ({why})")


def is_reset(description: str) -> bool:
    """Whether a child's mutation description includes ``reset_weights`` (its weights start from scratch)."""
    return any(part.strip() == RESET_WEIGHTS for part in description.split(";"))


@dataclass(frozen=True, slots=True)
class AlterLearningRate:
    """Move the learning rate 1..4 quarter-octaves up or down on ``genome.lse.LR_GRID`` (a factor in [1/2, 2])."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        old = g.learning_rate
        # A hand-written rate off the grid moves from the grid point nearest to it.
        k = min(range(len(LR_GRID)), key=lambda i: (abs(LR_GRID[i] - old), i))
        steps = [d for d in range(-MAX_LR_STEPS, MAX_LR_STEPS + 1) if d and 0 <= k + d < len(LR_GRID)
                 and LR_GRID[k + d] != old]
        new = LR_GRID[k + rng.choice(steps)]
        return Mutated(replace_genome(g, learning_rate=new), f"alter_learning_rate: {old:g}->{new:g}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "alter_learning_rate"}


@dataclass(frozen=True, slots=True)
class ResetWeights:
    """The same genome, trained from fresh weights (nothing is inherited from the parent)."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        return Mutated(_require(genome), RESET_WEIGHTS)

    def to_spec(self) -> dict[str, Any]:
        return {"type": RESET_WEIGHTS}


def _insert(g: LSEGenome, rng: random.Random, name: str, make_edge: Callable[[int, int, int, int], Edge]) -> Mutated:
    """Insert a new vertex right after a random backbone vertex ``u``, fed from ``u`` by ``make_edge``; the edge
    that left ``u`` along the backbone now leaves the new vertex (same id), skips stay where they were."""
    if len(g.vertices) >= MAX_VERTICES or g.next_id + 2 > MAX_ID:
        return _skip(name, g, f"the genome has the most vertices allowed ({MAX_VERTICES})")
    at = rng.randrange(len(g.vertices))
    u = g.vertices[at]
    channels = plan(g)[at].channels
    vid, eid = g.next_id, g.next_id + 1
    new_edge = make_edge(eid, u.id, vid, channels)
    activation = rng.choice(ACTIVATIONS)
    following = g.vertices[at + 1].id if at + 1 < len(g.vertices) else None
    edges = [replace(e, src=vid) if e.dst == following and e.kind != SKIP else e for e in g.edges]
    vertices = (*g.vertices[:at + 1], Vertex(vid, activation), *g.vertices[at + 1:])
    child = replace_genome(g, vertices=vertices, edges=(*edges, new_edge), next_id=g.next_id + 2)
    return Mutated(child, f"{name} after {u.id}: e{eid} {new_edge.summary()} into v{vid} {activation}")


@dataclass(frozen=True, slots=True)
class InsertConvolution:
    """After a random backbone vertex: a 3x3 convolution (stride 1 or 2 at random) to as many channels as its
    input, into a new vertex with batch norm + ReLU or none at random (the paper's insert-convolution)."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        stride = rng.choice((1, 2))
        return _insert(g, rng, "insert_convolution",
                       lambda eid, src, dst, channels: Edge(eid, src, dst, CONV, (3, 3), stride, channels))

    def to_spec(self) -> dict[str, Any]:
        return {"type": "insert_convolution"}


@dataclass(frozen=True, slots=True)
class InsertOneToOne:
    """After a random backbone vertex: an identity connection into a new vertex (batch norm + ReLU or none)."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        return _insert(_require(genome), rng, "insert_one_to_one",
                       lambda eid, src, dst, channels: Edge(eid, src, dst, IDENTITY))

    def to_spec(self) -> dict[str, Any]:
        return {"type": "insert_one_to_one"}


@dataclass(frozen=True, slots=True)
class RemoveConvolution:
    """Remove a random convolution and the vertex it feeds: what left that vertex (along the backbone or by
    skips) now leaves the convolution's input; skips into it go (their merge point is gone)."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        convs = g.convolutions()
        if not convs:
            return _skip("remove_convolution", g, "no convolution")
        e = rng.choice(convs)
        u, w = e.src, e.dst
        existing = {(s.src, s.dst) for s in g.skips() if s.src != w and s.dst != w}
        edges: list[Edge] = []
        for x in g.edges:
            if x.id == e.id or (x.kind == SKIP and x.dst == w):
                continue
            if x.src == w:
                if x.kind == SKIP and (u, x.dst) in existing:
                    continue  # u already skips there
                x = replace(x, src=u)
                if x.kind == SKIP:
                    existing.add((u, x.dst))
            edges.append(x)
        vertices = tuple(v for v in g.vertices if v.id != w)
        child = replace_genome(g, vertices=vertices, edges=tuple(edges))
        return Mutated(child, f"remove_convolution e{e.id} {e.summary()} and v{w}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "remove_convolution"}


def _pick_conv(g: LSEGenome, rng: random.Random) -> Edge | None:
    convs = g.convolutions()
    return rng.choice(convs) if convs else None


def _with_edge(g: LSEGenome, edge: Edge) -> LSEGenome:
    return replace_genome(g, edges=tuple(edge if e.id == edge.id else e for e in g.edges))


@dataclass(frozen=True, slots=True)
class AlterStride:
    """A random convolution's stride doubled or halved (powers of 2 only, 1..32)."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        e = _pick_conv(g, rng)
        if e is None:
            return _skip("alter_stride", g, "no convolution")
        options = [s for s in (e.stride * 2, e.stride // 2) if 1 <= s <= MAX_STRIDE and s != e.stride]
        new = rng.choice(options)
        return Mutated(_with_edge(g, replace(e, stride=new)), f"alter_stride e{e.id}: {e.stride}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "alter_stride"}


@dataclass(frozen=True, slots=True)
class AlterChannels:
    """A random convolution's output channels times a factor between 1/2 and 2 (log-uniform), rounded, 1..2048."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        e = _pick_conv(g, rng)
        if e is None:
            return _skip("alter_channels", g, "no convolution")
        new = min(MAX_CHANNELS, max(1, round(e.channels * 2 ** rng.uniform(-1.0, 1.0))))
        if new == e.channels:
            new = e.channels + 1 if e.channels < MAX_CHANNELS else e.channels - 1
        return Mutated(_with_edge(g, replace(e, channels=new)), f"alter_channels e{e.id}: {e.channels}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "alter_channels"}


@dataclass(frozen=True, slots=True)
class FilterSize:
    """A random convolution's filter height or width (at random) 2 larger or smaller: odd values, 1..15."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        e = _pick_conv(g, rng)
        if e is None:
            return _skip("filter_size", g, "no convolution")
        axis = rng.randrange(2)
        old = e.filter[axis]
        new = rng.choice([s for s in (old - 2, old + 2) if 1 <= s <= MAX_FILTER])
        filt = (new, e.filter[1]) if axis == 0 else (e.filter[0], new)
        what = "height" if axis == 0 else "width"
        return Mutated(_with_edge(g, replace(e, filter=filt)), f"filter_size e{e.id} {what}: {old}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "filter_size"}


@dataclass(frozen=True, slots=True)
class AddSkip:
    """An identity skip between a random pair of backbone vertices (earlier to later) not joined by one yet."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        if len(g.skips()) >= MAX_SKIPS or g.next_id + 1 > MAX_ID:
            return _skip("add_skip", g, f"the genome has the most skips allowed ({MAX_SKIPS})")
        taken = {(s.src, s.dst) for s in g.skips()}
        n = len(g.vertices)
        pairs = [(g.vertices[i].id, g.vertices[j].id) for j in range(1, n) for i in range(j)
                 if (g.vertices[i].id, g.vertices[j].id) not in taken]
        if not pairs:
            return _skip("add_skip", g, "no pair of vertices left to join")
        src, dst = rng.choice(pairs)
        edge = Edge(g.next_id, src, dst, SKIP)
        child = replace_genome(g, edges=(*g.edges, edge), next_id=g.next_id + 1)
        return Mutated(child, f"add_skip e{edge.id}: v{src}->v{dst}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "add_skip"}


@dataclass(frozen=True, slots=True)
class RemoveSkip:
    """A random skip removed."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require(genome)
        skips = g.skips()
        if not skips:
            return _skip("remove_skip", g, "no skip")
        e = rng.choice(skips)
        child = replace_genome(g, edges=tuple(x for x in g.edges if x.id != e.id))
        return Mutated(child, f"remove_skip e{e.id}: v{e.src}->v{e.dst}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "remove_skip"}


#: The JSON leaf types of the lse space (``identity`` is the built-in combinator).
LSE_MUTATIONS: dict[str, Callable[..., Mutation]] = {
    "alter_learning_rate": AlterLearningRate,
    RESET_WEIGHTS: ResetWeights,
    "insert_convolution": InsertConvolution,
    "remove_convolution": RemoveConvolution,
    "alter_stride": AlterStride,
    "alter_channels": AlterChannels,
    "filter_size": FilterSize,
    "insert_one_to_one": InsertOneToOne,
    "add_skip": AddSkip,
    "remove_skip": RemoveSkip,
}
#: The paper's list, in its order.
PAPER_ORDER: tuple[str, ...] = ("alter_learning_rate", "identity", RESET_WEIGHTS, "insert_convolution",
                                "remove_convolution", "alter_stride", "alter_channels", "filter_size",
                                "insert_one_to_one", "add_skip", "remove_skip")


def lse_default_spec(weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One of the paper's 11 mutations per child, uniformly, or in proportion to ``weights`` (by leaf name;
    names left out keep weight 1, weight 0 turns one off)."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(PAPER_ORDER))
    if unknown:
        raise MutationError(f"unknown lse mutation(s) {', '.join(unknown)}; expected {', '.join(PAPER_ORDER)}")
    return {"type": "choice", "options": [{"weight": float(weights.get(name, 1.0)), "op": {"type": name}}
                                          for name in PAPER_ORDER]}
