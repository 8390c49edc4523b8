"""The Large-Scale Evolution space (Real et al. 2017): whole networks as a graph grown from a trivial seed.

A genome is a directed acyclic graph plus a learning rate. Vertices are activations, ``linear`` or
``bn_relu`` (batch norm then ReLU); edges are convolutions (odd filter height and width, a power-of-2
stride, output channels) or identity connections. The graph has one *backbone*: the vertices in order,
the input first and the output last, each fed by exactly one primary edge (``conv`` or ``identity``)
from the vertex before it; ``skip`` edges are further identity connections from any earlier vertex.
The output vertex feeds global average pooling and the classifier. The trivial seed is the input alone
(no convolution: input -> global pool -> classifier) with learning rate 0.1, the paper's.

**Merging several inputs.** A vertex's shape is its primary input's: a convolution gives
``ceil(H / stride) x ceil(W / stride) x channels`` (SAME padding), an identity edge its source's shape.
Each skip input is made to agree before the sum, as the paper resolves inconsistent inputs against the
primary (non-skip) edge (zeroth-order interpolation for the size, truncation or padding for the channels):

- size: a skip comes from earlier in the backbone, where strides can only have shrunk the tensor, so it
  is subsampled by the ratio ``r`` of the two vertices' accumulated strides (every r-th pixel from the
  first, a strided slice: nearest-neighbour resampling). As ``ceil(ceil(H / a) / b) == ceil(H / ab)``,
  this gives exactly the vertex's size for every input size;
- channels: the first C channels are kept when the skip has more, zeros are appended when it has fewer.

The primary input and the aligned skips are then added (primary first, skips by edge id) and the
vertex's activation is applied to the sum. So every graph that validates builds, whatever the input size.

**Stable ids.** Vertices and edges carry ids from one counter (``next_id``); a mutation gives new
vertices and edges fresh ids and keeps everyone else's, so a child's layers are named after the same
places as its parent's (weight inheritance copies those whose shapes agree). The input is vertex 0.

``plan(genome)`` resolves shapes and merges once; the Flax model (``nets.lse``), the latency lowering
(``latency.lse``) and the exact parameter and multiply-add counts (``model_size``) all read it.

**The decision view** (``LSESpace``) writes a bounded family of these graphs as choices, for controllers
and for the random genomes of the baselines: the learning rate on a quarter-octave grid, a depth of 0..8
backbone steps, per step the edge (identity or a convolution with filter height and width in 1, 3, 5, 7,
stride 1 or 2, 8..256 channels), the activation, and a skip yes/no from every earlier vertex. Ids are
not choices: ``from_decisions`` numbers vertices and edges in order, ``decisions`` ignores ids, and a
genome outside those bounds (grown by mutation) has no decision sequence (GenomeError).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from genome.base import Decision, GenomeError, check_decisions, fingerprint_of, shown

SPACE_NAME = "lse"
INPUT_ID = 0
INPUT_CHANNELS = 3

LINEAR, BN_RELU = "linear", "bn_relu"
ACTIVATIONS: tuple[str, ...] = (LINEAR, BN_RELU)
CONV, IDENTITY, SKIP = "conv", "identity", "skip"
EDGE_KINDS: tuple[str, ...] = (CONV, IDENTITY, SKIP)
PRIMARY_KINDS = frozenset({CONV, IDENTITY})

#: The paper's initial learning rate: every seed starts with it.
SEED_LEARNING_RATE = 0.1
MIN_LEARNING_RATE, MAX_LEARNING_RATE = 1e-6, 10.0
#: Bounds of a genome a user (or a hostile client) may hand in; mutations keep within them.
MAX_VERTICES = 256
MAX_SKIPS = 1024
MAX_CHANNELS = 2048
MAX_FILTER = 15
MAX_STRIDE = 32
STRIDES: tuple[int, ...] = tuple(2**k for k in range(int(math.log2(MAX_STRIDE)) + 1))
MAX_ID = 10**9

#: Learning rates the mutation and the decision view use: 0.1 x 2^(k/4) for k = -40..8 (about 1e-4 to 0.4),
#: to 4 significant digits so the JSON stays short. 0.1 (k = 0) is on it.
LR_GRID: tuple[float, ...] = tuple(float(f"{SEED_LEARNING_RATE * 2 ** (k / 4):.4g}") for k in range(-40, 9))

#: The decision view's bounds (see the module docstring).
DECISION_DEPTH = 8
DECISION_EDGES: tuple[str, ...] = (IDENTITY, CONV)
DECISION_FILTERS: tuple[int, ...] = (1, 3, 5, 7)
DECISION_STRIDES: tuple[int, ...] = (1, 2)
DECISION_CHANNELS: tuple[int, ...] = (8, 16, 32, 64, 128, 256)


@dataclass(frozen=True, slots=True)
class Vertex:
    """An activation: ``linear`` (none) or ``bn_relu`` (batch norm, then ReLU) applied to the merged inputs."""

    id: int
    activation: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "activation": self.activation}


@dataclass(frozen=True, slots=True)
class Edge:
    """A connection ``src -> dst``: a primary ``conv`` or ``identity`` edge, or an identity ``skip``.

    Convolutions have an odd ``filter`` (height, width), a power-of-2 ``stride`` (both axes) and ``channels``
    outputs, no bias; the other kinds have none of these (``filter`` (1, 1), ``stride`` 1, ``channels`` 0).
    """

    id: int
    src: int
    dst: int
    kind: str
    filter: tuple[int, int] = (1, 1)
    stride: int = 1
    channels: int = 0

    @property
    def is_conv(self) -> bool:
        return self.kind == CONV

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "from": self.src, "to": self.dst, "kind": self.kind}
        if self.kind == CONV:
            data.update(filter=list(self.filter), stride=self.stride, channels=self.channels)
        return data

    def summary(self) -> str:
        if self.kind != CONV:
            return "id"
        return f"c{self.filter[0]}x{self.filter[1]}" + (f"/{self.stride}" if self.stride > 1 else "") + f":{self.channels}"


@dataclass(frozen=True, slots=True)
class LSEGenome:
    """The backbone's vertices in order (the input first, the output last), the edges by id, the learning
    rate, and the next free id. Build with ``make_genome`` (or parse JSON), which validates."""

    vertices: tuple[Vertex, ...]
    edges: tuple[Edge, ...]
    learning_rate: float
    next_id: int

    @property
    def space(self) -> str:
        return SPACE_NAME

    def to_json(self) -> dict[str, Any]:
        return {"space": SPACE_NAME, "learning_rate": self.learning_rate, "next_id": self.next_id,
                "vertices": [v.to_json() for v in self.vertices], "edges": [e.to_json() for e in self.edges]}

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(SPACE_NAME, self.to_json())

    def summary(self) -> str:
        parts = ["in"]
        for v in self.vertices[1:]:
            primary = self.primary(v.id)
            parts.append(primary.summary() + ("+bn" if v.activation == BN_RELU else ""))
        skips = sum(1 for e in self.edges if e.kind == SKIP)
        text = " > ".join(parts) + (f" ({skips} skip{'s' if skips != 1 else ''})" if skips else "")
        return f"{text}; lr {self.learning_rate:g}"

    # --- navigation ----------------------------------------------------------------------------------

    @property
    def output(self) -> int:
        return self.vertices[-1].id

    def position(self, vertex_id: int) -> int:
        for i, v in enumerate(self.vertices):
            if v.id == vertex_id:
                return i
        raise GenomeError(f"lse genome has no vertex {shown(vertex_id)}")

    def vertex(self, vertex_id: int) -> Vertex:
        return self.vertices[self.position(vertex_id)]

    def primary(self, vertex_id: int) -> Edge:
        """The conv or identity edge feeding ``vertex_id`` from the vertex before it (not the input's)."""
        for e in self.edges:
            if e.dst == vertex_id and e.kind in PRIMARY_KINDS:
                return e
        raise GenomeError(f"lse vertex {shown(vertex_id)} has no primary edge")

    def skips_into(self, vertex_id: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.dst == vertex_id and e.kind == SKIP)

    def convolutions(self) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.kind == CONV)

    def skips(self) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.kind == SKIP)


def _names(keys: Iterable[str]) -> str:
    text = ", ".join(sorted(keys))
    return text if len(text) <= 60 else text[:57] + "..."


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GenomeError(f"{what} must be an integer in {low}..{high}, got {shown(value)}")
    return value


def check_learning_rate(value: Any) -> float:
    """A learning rate a genome may carry (a finite number in [1e-6, 10]), or GenomeError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not MIN_LEARNING_RATE <= value <= MAX_LEARNING_RATE:
        raise GenomeError(f"lse learning_rate must be a number in [{MIN_LEARNING_RATE:g}, {MAX_LEARNING_RATE:g}], "
                          f"got {shown(value)}")
    return float(value)


def make_genome(vertices: Sequence[Vertex], edges: Iterable[Edge], learning_rate: float,
                next_id: int | None = None) -> LSEGenome:
    """A validated genome; edges are put in id order, ``next_id`` defaults to one past the largest id."""
    ordered = tuple(sorted(edges, key=lambda e: e.id))
    ids = [v.id for v in vertices] + [e.id for e in ordered]
    genome = LSEGenome(tuple(vertices), ordered, float(learning_rate),
                       max(ids, default=0) + 1 if next_id is None else next_id)
    validate(genome)
    return genome


def validate(g: LSEGenome) -> None:
    """Raise GenomeError unless ``g`` is a well-formed genome (see the module docstring for the rules)."""
    check_learning_rate(g.learning_rate)
    if not g.vertices:
        raise GenomeError("an lse genome needs at least the input vertex")
    if len(g.vertices) > MAX_VERTICES:
        raise GenomeError(f"an lse genome has at most {MAX_VERTICES} vertices, got {len(g.vertices)}")
    first = g.vertices[0]
    if first.id != INPUT_ID or first.activation != LINEAR:
        raise GenomeError(f"the first lse vertex must be the input (id {INPUT_ID}, linear), got id {shown(first.id)} "
                          f"{shown(first.activation)}")
    _int(g.next_id, "lse next_id", 1, MAX_ID)
    seen: set[int] = set()
    for v in g.vertices:
        _int(v.id, "an lse vertex id", 0, MAX_ID)
        if v.activation not in ACTIVATIONS:
            raise GenomeError(f"lse vertex {v.id}: activation must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {shown(v.activation)}")
        if v.id in seen:
            raise GenomeError(f"lse id {v.id} is used twice")
        seen.add(v.id)
    position = {v.id: i for i, v in enumerate(g.vertices)}
    skips = 0
    primary: dict[int, Edge] = {}
    pairs: set[tuple[int, int]] = set()
    last = -1
    for e in g.edges:
        _int(e.id, "an lse edge id", 0, MAX_ID)
        if e.id in seen:
            raise GenomeError(f"lse id {e.id} is used twice")
        if e.id < last:
            raise GenomeError("lse edges must be listed in id order")
        last = e.id
        seen.add(e.id)
        where = f"lse edge {e.id}"
        if e.kind not in EDGE_KINDS:
            raise GenomeError(f"{where}: kind must be one of {', '.join(EDGE_KINDS)}, got {shown(e.kind)}")
        for end, name in ((e.src, "from"), (e.dst, "to")):
            if end not in position:
                raise GenomeError(f"{where}: '{name}' names no vertex ({shown(end)})")
        if e.dst == INPUT_ID:
            raise GenomeError(f"{where}: nothing may feed the input vertex")
        if e.kind == CONV:
            for axis, size in zip(("height", "width"), e.filter, strict=True):
                _int(size, f"{where}: filter {axis}", 1, MAX_FILTER)
                if size % 2 == 0:
                    raise GenomeError(f"{where}: filter {axis} must be odd, got {size}")
            if e.stride not in STRIDES or isinstance(e.stride, bool):
                raise GenomeError(f"{where}: stride must be a power of 2 in 1..{MAX_STRIDE}, got {shown(e.stride)}")
            _int(e.channels, f"{where}: channels", 1, MAX_CHANNELS)
        elif (e.filter, e.stride, e.channels) != ((1, 1), 1, 0):
            raise GenomeError(f"{where}: an {e.kind} edge has no filter, stride or channels")
        if e.kind in PRIMARY_KINDS:
            if e.dst in primary:
                raise GenomeError(f"lse vertex {e.dst} has two primary edges ({primary[e.dst].id} and {e.id}); "
                                  "further inputs must be skips")
            if position[e.src] != position[e.dst] - 1:
                raise GenomeError(f"{where}: a {e.kind} edge must join consecutive backbone vertices "
                                  f"({g.vertices[position[e.dst] - 1].id} -> {e.dst}), not {e.src} -> {e.dst}")
            primary[e.dst] = e
        else:
            skips += 1
            if position[e.src] >= position[e.dst]:
                raise GenomeError(f"{where}: a skip must go forward along the backbone, not {e.src} -> {e.dst}")
            if (e.src, e.dst) in pairs:
                raise GenomeError(f"{where}: a skip {e.src} -> {e.dst} exists already")
            pairs.add((e.src, e.dst))
    if skips > MAX_SKIPS:
        raise GenomeError(f"an lse genome has at most {MAX_SKIPS} skips, got {skips}")
    for v in g.vertices[1:]:
        if v.id not in primary:
            raise GenomeError(f"lse vertex {v.id} has no primary (conv or identity) edge from the vertex before it")
    if max(seen) >= g.next_id:
        raise GenomeError(f"lse next_id ({g.next_id}) must exceed every id (the largest is {max(seen)})")


def seed_genome(learning_rate: float = SEED_LEARNING_RATE) -> LSEGenome:
    """The trivial seed: the input alone (global pool and classifier, no convolution), learning rate 0.1."""
    return make_genome((Vertex(INPUT_ID, LINEAR),), (), learning_rate, 1)


# --- JSON ---------------------------------------------------------------------------------------------------

_VERTEX_KEYS = frozenset({"id", "activation"})
_EDGE_KEYS = frozenset({"id", "from", "to", "kind", "filter", "stride", "channels"})


def _parse_vertex(data: Any, i: int) -> Vertex:
    if not isinstance(data, dict):
        raise GenomeError(f"lse vertex {i} must be an object with id and activation, got {type(data).__name__}")
    unknown = set(map(str, data)) - _VERTEX_KEYS
    if unknown:
        raise GenomeError(f"lse vertex {i} has unknown keys: {_names(unknown)}")
    if "id" not in data or "activation" not in data:
        raise GenomeError(f"lse vertex {i} needs id and activation")
    return Vertex(_int(data["id"], f"lse vertex {i} id", 0, MAX_ID), data["activation"])


def _parse_edge(data: Any, i: int) -> Edge:
    if not isinstance(data, dict):
        raise GenomeError(f"lse edge {i} must be an object with id, from, to and kind, got {type(data).__name__}")
    unknown = set(map(str, data)) - _EDGE_KEYS
    if unknown:
        raise GenomeError(f"lse edge {i} has unknown keys: {_names(unknown)}")
    missing = [k for k in ("id", "from", "to", "kind") if k not in data]
    if missing:
        raise GenomeError(f"lse edge {i} is missing {', '.join(missing)}")
    kind = data["kind"]
    ident = _int(data["id"], f"lse edge {i} id", 0, MAX_ID)
    src = _int(data["from"], f"lse edge {ident} 'from'", 0, MAX_ID)
    dst = _int(data["to"], f"lse edge {ident} 'to'", 0, MAX_ID)
    if kind != CONV:
        extra = sorted(k for k in ("filter", "stride", "channels") if k in data)
        if extra:
            raise GenomeError(f"lse edge {ident}: an {shown(kind)} edge has no {', '.join(extra)}")
        return Edge(ident, src, dst, kind)
    missing = [k for k in ("filter", "stride", "channels") if k not in data]
    if missing:
        raise GenomeError(f"lse edge {ident}: a conv edge needs {', '.join(missing)}")
    filt = data["filter"]
    if not isinstance(filt, list) or len(filt) != 2:
        raise GenomeError(f"lse edge {ident}: filter must be [height, width], got {shown(filt)}")
    return Edge(ident, src, dst, CONV, (filt[0], filt[1]), data["stride"], data["channels"])


def parse_lse(data: Any) -> LSEGenome:
    """Decode and validate an lse genome's JSON data; GenomeError with what is wrong otherwise."""
    if not isinstance(data, dict):
        raise GenomeError(f"an {SPACE_NAME} genome must be a JSON object, got {type(data).__name__}")
    if data.get("space", SPACE_NAME) != SPACE_NAME:
        raise GenomeError(f"genome is of space {shown(data.get('space'))}, not {SPACE_NAME!r}")
    unknown = set(map(str, data)) - {"space", "learning_rate", "next_id", "vertices", "edges"}
    if unknown:
        raise GenomeError(f"{SPACE_NAME} genome has unknown keys: {_names(unknown)}")
    missing = [k for k in ("learning_rate", "next_id", "vertices", "edges") if k not in data]
    if missing:
        raise GenomeError(f"{SPACE_NAME} genome is missing {', '.join(missing)}")
    vertices, edges = data["vertices"], data["edges"]
    if not isinstance(vertices, list) or not isinstance(edges, list):
        raise GenomeError(f"{SPACE_NAME} genome vertices and edges must be lists")
    if len(vertices) > MAX_VERTICES or len(edges) > MAX_VERTICES + MAX_SKIPS:
        raise GenomeError(f"an lse genome has at most {MAX_VERTICES} vertices and {MAX_VERTICES + MAX_SKIPS} edges")
    genome = LSEGenome(tuple(_parse_vertex(v, i) for i, v in enumerate(vertices)),
                       tuple(_parse_edge(e, i) for i, e in enumerate(edges)),
                       check_learning_rate(data["learning_rate"]),
                       _int(data["next_id"], "lse next_id", 1, MAX_ID))
    validate(genome)
    return genome


# --- shapes and merges: the network every consumer builds ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkipPlan:
    """One skip input of a vertex: subsample by ``stride`` (1: keep), then cut or zero-pad ``channels`` to the
    vertex's."""

    edge: int
    src: int
    stride: int
    channels: int


@dataclass(frozen=True, slots=True)
class VertexPlan:
    """A vertex with its primary edge (None for the input), its aligned skips, its channels and its
    accumulated stride from the input (its size is ``ceil(input_size / scale)`` on each axis)."""

    vertex: Vertex
    primary: Edge | None
    skips: tuple[SkipPlan, ...]
    channels: int
    scale: int


def plan(genome: LSEGenome) -> tuple[VertexPlan, ...]:
    """The vertices in backbone order with their shapes and merges resolved (independent of the input size)."""
    out: list[VertexPlan] = []
    by_id: dict[int, VertexPlan] = {}
    edges_into: dict[int, list[Edge]] = {}
    for e in genome.edges:
        edges_into.setdefault(e.dst, []).append(e)
    for v in genome.vertices:
        into = edges_into.get(v.id, [])
        if v.id == INPUT_ID:
            vp = VertexPlan(v, None, (), INPUT_CHANNELS, 1)
        else:
            primary = next(e for e in into if e.kind in PRIMARY_KINDS)
            src = by_id[primary.src]
            channels = primary.channels if primary.is_conv else src.channels
            scale = src.scale * (primary.stride if primary.is_conv else 1)
            skips = tuple(SkipPlan(e.id, e.src, scale // by_id[e.src].scale, by_id[e.src].channels)
                          for e in into if e.kind == SKIP)
            vp = VertexPlan(v, primary, skips, channels, scale)
        by_id[v.id] = vp
        out.append(vp)
    return tuple(out)


def spatial(size: int, scale: int) -> int:
    """The extent of an axis of ``size`` pixels after SAME-padded strides whose product is ``scale``."""
    return -(-size // scale)


@dataclass(frozen=True, slots=True)
class ModelSize:
    """Trainable parameters and multiply-adds per image of a genome's network (convolutions and the
    classifier; batch norm has 2 parameters per channel, pooling and additions no multiply-adds)."""

    params: int
    mult_adds: int


def model_size(genome: LSEGenome, input_size: int = 32, num_classes: int = 10) -> ModelSize:
    """Exact parameter and multiply-add counts of ``genome``'s network for ``input_size`` RGB images."""
    params = macs = 0
    by_id: dict[int, VertexPlan] = {}
    for vp in plan(genome):
        by_id[vp.vertex.id] = vp
        e = vp.primary
        if e is not None and e.is_conv:
            weights = e.filter[0] * e.filter[1] * by_id[e.src].channels * e.channels
            params += weights
            macs += spatial(input_size, vp.scale) ** 2 * weights
        if vp.vertex.activation == BN_RELU:
            params += 2 * vp.channels
    c = plan(genome)[-1].channels
    return ModelSize(params + c * num_classes + num_classes, macs + c * num_classes)


# --- the decision view -----------------------------------------------------------------------------------------


def _grid_index(value: float) -> int | None:
    try:
        return LR_GRID.index(value)
    except ValueError:
        return None


def _decision_at(prefix: Sequence[int]) -> Decision | None:
    """The decision after ``prefix`` (which must be in range); None when the sequence is complete."""
    n = len(prefix)
    if n == 0:
        return Decision("learning_rate", len(LR_GRID))
    if n == 1:
        return Decision("depth", DECISION_DEPTH + 1)
    depth, i, step = prefix[1], 2, 1
    while step <= depth:
        slots: list[Decision] = [Decision("edge", len(DECISION_EDGES))]
        if i < n and DECISION_EDGES[prefix[i]] == CONV:
            slots += [Decision("filter_h", len(DECISION_FILTERS)), Decision("filter_w", len(DECISION_FILTERS)),
                      Decision("stride", len(DECISION_STRIDES)), Decision("channels", len(DECISION_CHANNELS))]
        slots.append(Decision("activation", len(ACTIVATIONS)))
        # A skip yes/no from every earlier vertex but the one the primary edge comes from.
        slots += [Decision("skip", 2)] * (step - 1)
        if n < i + len(slots):
            return slots[n - i]
        i += len(slots)
        step += 1
    return None


class LSESpace:
    """Sampling, decoding and the bounded decision view of the lse space (see the module docstring).

    ``seed()`` is the trivial seed the ``pairwise`` algorithm starts its population from; ``sample`` draws a
    random genome of the decision view (what ``aging``'s initial population and ``random`` search use).
    """

    name = SPACE_NAME

    def seed(self) -> LSEGenome:
        return seed_genome()

    def sample(self, rng: random.Random) -> LSEGenome:
        out: list[int] = []
        while (nxt := _decision_at(out)) is not None:
            out.append(rng.randrange(nxt.choices))
        return self.from_decisions(out)

    def from_json(self, data: Any) -> LSEGenome:
        return parse_lse(data)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return _decision_at(prefix)

    def decisions(self, genome: LSEGenome) -> tuple[int, ...]:
        """The choices that write ``genome`` (ids aside); GenomeError when it lies outside the view's bounds."""
        lr = _grid_index(genome.learning_rate)
        if lr is None:
            raise GenomeError(f"learning rate {genome.learning_rate:g} is not on the decision view's grid")
        depth = len(genome.vertices) - 1
        if depth > DECISION_DEPTH:
            raise GenomeError(f"the decision view writes at most {DECISION_DEPTH} backbone steps, the genome has {depth}")
        out = [lr, depth]
        for i, v in enumerate(genome.vertices[1:], start=1):
            e = genome.primary(v.id)
            out.append(DECISION_EDGES.index(e.kind))
            if e.is_conv:
                for value, allowed, what in ((e.filter[0], DECISION_FILTERS, "filter height"),
                                             (e.filter[1], DECISION_FILTERS, "filter width"),
                                             (e.stride, DECISION_STRIDES, "stride"),
                                             (e.channels, DECISION_CHANNELS, "channels")):
                    if value not in allowed:
                        raise GenomeError(f"edge {e.id}: {what} {value} is outside the decision view "
                                          f"({', '.join(map(str, allowed))})")
                    out.append(allowed.index(value))
            out.append(ACTIVATIONS.index(v.activation))
            sources = {s.src for s in genome.skips_into(v.id)}
            if e.src in sources:
                raise GenomeError(f"vertex {v.id}: the decision view has no skip beside the primary edge")
            out += [int(genome.vertices[j].id in sources) for j in range(i - 1)]
        return tuple(out)

    def from_decisions(self, decisions: Sequence[int]) -> LSEGenome:
        check_decisions(self, decisions)
        lr, depth = LR_GRID[decisions[0]], decisions[1]
        vertices = [Vertex(INPUT_ID, LINEAR)]
        edges: list[Edge] = []
        i, next_id = 2, 1
        for step in range(1, depth + 1):
            vid, eid = next_id, next_id + 1
            next_id += 2
            kind = DECISION_EDGES[decisions[i]]
            i += 1
            if kind == CONV:
                fh, fw, s, c = decisions[i:i + 4]
                i += 4
                edges.append(Edge(eid, vertices[-1].id, vid, CONV, (DECISION_FILTERS[fh], DECISION_FILTERS[fw]),
                                  DECISION_STRIDES[s], DECISION_CHANNELS[c]))
            else:
                edges.append(Edge(eid, vertices[-1].id, vid, IDENTITY))
            activation = ACTIVATIONS[decisions[i]]
            i += 1
            for j in range(step - 1):
                if decisions[i + j]:
                    edges.append(Edge(next_id, vertices[j].id, vid, SKIP))
                    next_id += 1
            i += step - 1
            vertices.append(Vertex(vid, activation))
        return make_genome(vertices, edges, lr, next_id)


def replace_genome(genome: LSEGenome, **changes: Any) -> LSEGenome:
    """``genome`` with fields replaced (edges re-sorted by id), validated."""
    changed = replace(genome, **changes)
    return make_genome(changed.vertices, changed.edges, changed.learning_rate, changed.next_id)
