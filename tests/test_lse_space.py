"""The Large-Scale Evolution space without JAX: genome JSON and validation, the merge rule, exact sizes, the
decision view, every mutation, properties of long random mutation chains, the registry entry and its
training_overrides and inherit hooks (over stand-in arrays)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spaces
from genome.base import GenomeError, canonical_json
from genome.lse import (
    BN_RELU,
    CONV,
    IDENTITY,
    INPUT_ID,
    LINEAR,
    LR_GRID,
    SKIP,
    Edge,
    LSEGenome,
    LSESpace,
    Vertex,
    make_genome,
    model_size,
    parse_lse,
    plan,
    seed_genome,
    spatial,
)
from latency.builder import LoweringError
from latency.ir import ADD, DENSE, MEAN, PAD, SLICE
from latency.ir import CONV as CONV_LAYER
from mutations import MutationError, build_mutation
from mutations.lse import LSE_MUTATIONS, PAPER_ORDER, RESET_WEIGHTS, is_reset, lse_default_spec

pytestmark = pytest.mark.unit

SPACE = spaces.get("lse")
CODEC = LSESpace()
MUTATE = SPACE.build_mutation()


def _net() -> LSEGenome:
    """input -> conv 3x3/2 to 8 (bn) -> identity (linear) -> conv 1x3 to 4 (bn), with skips 0->3 and 1->5."""
    return make_genome(
        (Vertex(0, LINEAR), Vertex(1, BN_RELU), Vertex(3, LINEAR), Vertex(5, BN_RELU)),
        (Edge(2, 0, 1, CONV, (3, 3), 2, 8), Edge(4, 1, 3, IDENTITY), Edge(6, 3, 5, CONV, (1, 3), 1, 4),
         Edge(7, 0, 3, SKIP), Edge(8, 1, 5, SKIP)),
        0.05)


# --- genomes ------------------------------------------------------------------------------------------------


def test_the_seed_is_the_input_alone_with_learning_rate_one_tenth() -> None:
    seed = seed_genome()
    assert seed.to_json() == {"space": "lse", "learning_rate": 0.1, "next_id": 1,
                              "vertices": [{"id": 0, "activation": "linear"}], "edges": []}
    assert SPACE.named["lse-seed"]() == seed == CODEC.seed()
    # input -> global pool -> classifier: no convolution at all.
    layers = SPACE.graph(seed).layers
    assert [x.kind for x in layers] == [MEAN, DENSE] and layers[0].inputs == (-1,)
    assert model_size(seed).params == 3 * 10 + 10


def test_json_round_trips_and_fingerprints_follow_the_content() -> None:
    g = _net()
    assert parse_lse(g.to_json()) == g
    assert SPACE.parse(canonical_json(g.to_json())) == g
    assert spaces.parse_genome(g.to_json()) == g
    assert g.fingerprint == parse_lse(copy.deepcopy(g.to_json())).fingerprint
    assert g.fingerprint != make_genome(g.vertices, g.edges, 0.1).fingerprint
    assert g.summary() == "in > c3x3/2:8+bn > id > c1x3:4+bn (2 skips); lr 0.05"


BAD: list[tuple[str, Any]] = [
    ("must be a JSON object", []),
    ("not 'lse'", {"space": "nb201"}),
    ("unknown keys: colour", {**seed_genome().to_json(), "colour": 1}),
    ("missing next_id", {k: v for k, v in seed_genome().to_json().items() if k != "next_id"}),
    ("learning_rate must be a number", {**seed_genome().to_json(), "learning_rate": 0.0}),
    ("learning_rate must be a number", {**seed_genome().to_json(), "learning_rate": float("nan")}),
    ("learning_rate must be a number", {**seed_genome().to_json(), "learning_rate": True}),
    ("must be the input", {**seed_genome().to_json(), "vertices": [{"id": 0, "activation": "bn_relu"}]}),
    ("needs at least the input", {**seed_genome().to_json(), "vertices": []}),
]


def _edit(change: Any) -> dict[str, Any]:
    data = _net().to_json()
    change(data)
    return data


BAD += [
    ("activation must be one of", _edit(lambda d: d["vertices"][1].update(activation="tanh"))),
    ("filter height must be odd", _edit(lambda d: d["edges"][0].update(filter=[2, 3]))),
    ("filter width must be an integer in 1..15", _edit(lambda d: d["edges"][0].update(filter=[3, 17]))),
    ("stride must be a power of 2", _edit(lambda d: d["edges"][0].update(stride=3))),
    ("channels must be an integer", _edit(lambda d: d["edges"][0].update(channels=0))),
    ("an .identity. edge has no stride", _edit(lambda d: d["edges"][1].update(stride=2))),
    ("a conv edge needs channels", _edit(lambda d: d["edges"][0].pop("channels"))),
    ("must join consecutive backbone vertices", _edit(lambda d: d["edges"][1].update(**{"from": 0}))),
    ("a skip must go forward", _edit(lambda d: d["edges"][3].update(**{"from": 5, "to": 3}))),
    ("nothing may feed the input", _edit(lambda d: d["edges"][3].update(to=0))),
    ("names no vertex", _edit(lambda d: d["edges"][3].update(**{"from": 99}))),
    ("has two primary edges", _edit(lambda d: d["edges"][3].update(kind="identity", **{"from": 1}))),
    ("has no primary", _edit(lambda d: d["edges"].pop(1))),
    ("is used twice", _edit(lambda d: d["edges"][1].update(id=2))),
    ("exists already", _edit(lambda d: d["edges"][4].update(**{"from": 0, "to": 3}))),
    ("must exceed every id", _edit(lambda d: d.update(next_id=5))),
    ("id order", _edit(lambda d: d["edges"].reverse())),
    ("kind must be one of", _edit(lambda d: d["edges"][3].update(kind="pool"))),
]


@pytest.mark.parametrize(("message", "data"), BAD, ids=[b[0] for b in BAD])
def test_malformed_genomes_are_refused_with_a_message_naming_the_fault(message: str, data: Any) -> None:
    with pytest.raises(GenomeError, match=message):
        SPACE.parse(data)


# --- the merge rule and sizes --------------------------------------------------------------------------------


def test_skips_are_subsampled_by_the_stride_ratio_and_cut_or_padded_to_the_vertex_channels() -> None:
    p = {vp.vertex.id: vp for vp in plan(_net())}
    assert [(vp.channels, vp.scale) for vp in p.values()] == [(3, 1), (8, 2), (8, 2), (4, 2)]
    # 0 -> 3: the image (3 channels, scale 1) into a vertex at scale 2 with 8 channels: every 2nd pixel, padded.
    assert [(s.src, s.stride, s.channels) for s in p[3].skips] == [(0, 2, 3)]
    # 1 -> 5: same scale, 8 channels into 4: the first 4 kept.
    assert [(s.src, s.stride, s.channels) for s in p[5].skips] == [(1, 1, 8)]
    layers = SPACE.graph(_net(), input_size=15).layers
    assert [x.kind for x in layers] == [CONV_LAYER, SLICE, PAD, ADD, CONV_LAYER, SLICE, ADD, MEAN, DENSE]
    assert [x.out_shape for x in layers[:7]] == [(8, 8, 8), (8, 8, 3), (8, 8, 8), (8, 8, 8), (8, 8, 4), (8, 8, 4),
                                                  (8, 8, 4)]


@pytest.mark.parametrize("size", [8, 9, 15, 16, 31, 32, 33])
def test_strided_subsampling_gives_the_vertex_size_for_every_input_size(size: int) -> None:
    # ceil(ceil(H / a) / b) == ceil(H / ab): a skip over two stride-2 convolutions lands on the right size.
    g = make_genome((Vertex(0, LINEAR), Vertex(1, LINEAR), Vertex(3, LINEAR)),
                    (Edge(2, 0, 1, CONV, (3, 3), 2, 4), Edge(4, 1, 3, CONV, (3, 3), 4, 4), Edge(5, 0, 3, SKIP)), 0.1)
    assert [s.stride for s in plan(g)[2].skips] == [8]
    graph = SPACE.graph(g, input_size=size)
    want = spatial(size, 8)
    assert all(x.out_shape[:2] == (want, want) for x in graph.layers if x.kind in (SLICE, PAD, ADD))


def test_sizes_are_exact_and_batch_norm_counts_two_per_channel() -> None:
    g = _net()
    size = model_size(g, 32, 10)
    conv1, conv2 = 3 * 3 * 3 * 8, 1 * 3 * 8 * 4
    assert size.params == conv1 + conv2 + 2 * 8 + 2 * 4 + 4 * 10 + 10
    assert size.mult_adds == 16 * 16 * conv1 + 16 * 16 * conv2 + 4 * 10
    graph = SPACE.graph(g)
    assert graph.total_macs() == size.mult_adds and graph.total_params() == size.params


def test_the_lowering_refuses_bad_networks() -> None:
    for network, message in (({"input_size": 4}, "at least 8"), ({"num_classes": 0}, "at least 1")):
        with pytest.raises(LoweringError, match=message):
            SPACE.lower(_net(), {**SPACE.network, **network})
    with pytest.raises(LoweringError, match="has no cells"):
        SPACE.lower(_net(), {"input_size": 32, "num_classes": 10, "cells": 3})


# --- the decision view ---------------------------------------------------------------------------------------


def test_the_decision_layout_and_its_bounds() -> None:
    assert SPACE.decisions(seed_genome()) == (LR_GRID.index(0.1), 0)
    g = CODEC.from_decisions([40, 2, 1, 1, 1, 0, 2, 1, 0, 1, 1])
    # lr 0.1; 2 steps: conv 3x3 stride 1 to 32 (bn), identity (bn) with a skip from the input.
    assert g.summary() == "in > c3x3:32+bn > id+bn (1 skip); lr 0.1"
    assert [v.id for v in g.vertices] == [0, 1, 3] and g.next_id == 6
    assert SPACE.decisions(g) == (40, 2, 1, 1, 1, 0, 2, 1, 0, 1, 1)
    for genome, message in ((make_genome(g.vertices, g.edges, 0.123), "not on the decision view's grid"),
                            (_net(), "outside the decision view")):
        with pytest.raises(GenomeError, match=message):
            SPACE.decisions(genome)
    deep: Any = seed_genome()
    rng = random.Random(0)
    insert = LSE_MUTATIONS["insert_one_to_one"]()
    for _ in range(9):
        deep = insert(deep, rng).genome
    with pytest.raises(GenomeError, match="at most 8 backbone steps"):
        SPACE.decisions(deep)


# --- mutations -----------------------------------------------------------------------------------------------


def _apply(name: str, genome: LSEGenome, seed: int = 0) -> tuple[LSEGenome, str]:
    result = LSE_MUTATIONS[name]()(genome, random.Random(seed))
    assert isinstance(result.genome, LSEGenome)
    return result.genome, result.description


def test_the_default_spec_is_the_papers_eleven_mutations_uniformly() -> None:
    spec = lse_default_spec()
    assert [o["op"]["type"] for o in spec["options"]] == list(PAPER_ORDER) and len(PAPER_ORDER) == 11
    assert {o["weight"] for o in spec["options"]} == {1.0}
    weighted = lse_default_spec({"reset_weights": 0.0, "insert_convolution": 3.0})
    assert [o["weight"] for o in weighted["options"]][2:4] == [0.0, 3.0]
    assert build_mutation(weighted, LSE_MUTATIONS).to_spec() == weighted
    with pytest.raises(MutationError, match="unknown lse mutation"):
        lse_default_spec({"crossover": 1.0})
    with pytest.raises(MutationError, match="applies to lse genomes"):
        LSE_MUTATIONS["add_skip"]()(spaces.get("nb201").sample(random.Random(0)), random.Random(0))


def test_insertions_keep_every_other_id_and_feed_the_old_successor_from_the_new_vertex() -> None:
    g = _net()
    child, text = _apply("insert_convolution", g, seed=3)
    new = [v for v in child.vertices if v.id not in {v.id for v in g.vertices}]
    assert len(new) == 1 and child.next_id == g.next_id + 2 and "insert_convolution after" in text
    conv = child.primary(new[0].id)
    assert conv.kind == CONV and conv.filter == (3, 3) and conv.stride in (1, 2)
    assert conv.channels == {vp.vertex.id: vp.channels for vp in plan(g)}[conv.src]  # the input's channels
    old_ids = {e.id for e in g.edges}
    assert old_ids <= {e.id for e in child.edges}
    # The edge that left the insertion point along the backbone now leaves the new vertex (same id, shape).
    moved = [e for e in child.edges if e.src == new[0].id]
    assert all(e.id in old_ids for e in moved)
    one, _ = _apply("insert_one_to_one", seed_genome(), seed=1)
    assert [e.kind for e in one.edges] == [IDENTITY] and len(one.vertices) == 2


def test_removing_a_convolution_rewires_what_left_its_vertex_and_drops_skips_into_it() -> None:
    g = _net()
    child, text = _apply("remove_convolution", g, seed=0)
    removed = next(e for e in g.convolutions() if e.id not in {x.id for x in child.edges})
    assert f"remove_convolution e{removed.id}" in text
    assert removed.dst not in {v.id for v in child.vertices}
    for e in child.edges:
        assert removed.dst not in (e.src, e.dst)
    assert parse_lse(child.to_json()) == child
    assert _apply("remove_convolution", seed_genome())[1] == "remove_convolution: not applicable (no convolution)"


def test_numeric_mutations_stay_in_their_domains() -> None:
    g = _net()
    for seed in range(30):
        child, _ = _apply("alter_stride", g, seed)
        strides = [(o.stride, e.stride) for e, o in zip(child.edges, g.edges, strict=True) if e != o]
        assert len(strides) == 1 and strides[0][1] in (strides[0][0] * 2, strides[0][0] // 2) and strides[0][1] >= 1
        child, _ = _apply("filter_size", g, seed)
        assert all(f % 2 == 1 and 1 <= f <= 15 for e in child.convolutions() for f in e.filter)
        child, _ = _apply("alter_channels", g, seed)
        diff = [(o.channels, e.channels) for e, o in zip(child.edges, g.edges, strict=True) if e != o]
        assert len(diff) == 1 and diff[0][0] != diff[0][1] and diff[0][0] / 2 - 1 <= diff[0][1] <= diff[0][0] * 2 + 1
        child, text = _apply("alter_learning_rate", g, seed)
        assert child.learning_rate in LR_GRID and 0.025 <= child.learning_rate <= 0.1 + 1e-9
        assert text.startswith("alter_learning_rate: 0.05->")


def test_skips_are_added_between_unjoined_pairs_and_removed() -> None:
    g = _net()
    child, text = _apply("add_skip", g, seed=2)
    new = [e for e in child.edges if e.id == g.next_id]
    assert len(new) == 1 and new[0].kind == SKIP and (new[0].src, new[0].dst) not in {(7, 7)}
    assert (new[0].src, new[0].dst) not in {(e.src, e.dst) for e in g.skips()}
    child, text = _apply("remove_skip", g, seed=2)
    assert len(child.skips()) == 1 and text.startswith("remove_skip e")
    assert _apply("add_skip", seed_genome())[1] == "add_skip: not applicable (no pair of vertices left to join)"


def test_identity_and_reset_weights_keep_the_genome_and_reset_says_so() -> None:
    g = _net()
    reset, text = _apply(RESET_WEIGHTS, g)
    assert reset == g and text == "reset_weights" and is_reset(text)
    assert is_reset("alter_stride e2: 1->2; reset_weights") and not is_reset("identity")
    assert build_mutation({"type": "identity"}, LSE_MUTATIONS)(g, random.Random(0)).genome == g


def _places(g: LSEGenome) -> dict[int, Any]:
    """What each id names: a vertex's activation, an edge's kind and parameters (not its endpoints)."""
    out: dict[int, Any] = {v.id: ("v", v.activation) for v in g.vertices}
    out.update({e.id: ("e", e.kind, e.filter, e.stride, e.channels) for e in g.edges})
    return out


@settings(max_examples=1000, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 40))
def test_random_mutation_chains_always_give_valid_buildable_acyclic_genomes(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    g = seed_genome()
    for _ in range(steps):
        result = MUTATE(g, rng)
        child = result.genome
        assert isinstance(child, LSEGenome)
        # Valid: the child survives its own JSON validation, unchanged.
        assert SPACE.parse(canonical_json(child.to_json())) == child
        # The input vertex is never modified: first, linear, fed by nothing.
        assert child.vertices[0] == Vertex(INPUT_ID, LINEAR)
        assert all(e.dst != INPUT_ID for e in child.edges)
        # Acyclic: every edge goes forward along the backbone order.
        pos = {v.id: i for i, v in enumerate(child.vertices)}
        assert all(pos[e.src] < pos[e.dst] for e in child.edges)
        # Stable ids: an id the parent had names the same kind of thing in the child (or is gone); new ids are new.
        old, new = _places(g), _places(child)
        assert all(new[i][0] == old[i][0] for i in set(old) & set(new))
        assert all(i >= g.next_id for i in set(new) - set(old)) and child.next_id >= g.next_id
        g = child
    # Buildable: the lowering (which follows the Flax model op for op) resolves every shape.
    for size in (8, 13, 32):
        graph = SPACE.graph(g, input_size=size)
        assert graph.output_shape == (10,) and graph.total_macs() == model_size(g, size, 10).mult_adds


def test_thousands_of_mutations_from_the_seed_stay_within_bounds() -> None:
    rng = random.Random(2017)
    for _ in range(40):
        g = seed_genome()
        for _ in range(100):
            g = MUTATE(g, rng).genome  # type: ignore[assignment]
        SPACE.price(g, SPACE.latency_settings())
        assert len(g.vertices) <= 256 and len(g.skips()) <= 1024


# --- the registry entry and its hooks ------------------------------------------------------------------------


def test_the_space_is_registered_with_its_model_configs_and_hooks() -> None:
    assert "lse" in spaces.names() and SPACE.model == "nets.lse:build"
    assert SPACE.configs == {"train": "lse-tiny"} and dict(SPACE.network) == {"input_size": 32, "num_classes": 10}
    assert SPACE.training_overrides is not None and SPACE.inherit is not None
    assert SPACE.training_overrides(_net()) == {"learning_rate": 0.05}
    assert spaces.get("nasnet").training_overrides is None and spaces.get("nasnet").inherit is None


@dataclass(frozen=True)
class _Array:
    """A stand-in array: inherit only reads ``shape`` and ``dtype``."""

    shape: tuple[int, ...]
    tag: str
    dtype: str = "float32"


def _vars(tag: str, layers: dict[str, dict[str, tuple[int, ...]]]) -> dict[str, Any]:
    params = {n: {k: _Array(s, tag) for k, s in leaves.items() if k not in ("mean", "var")} for n, leaves in layers.items()}
    stats = {n: {k: _Array(s, tag) for k, s in leaves.items() if k in ("mean", "var")} for n, leaves in layers.items()
             if "mean" in leaves}
    return {"params": params, "batch_stats": stats}


def test_inherit_copies_layers_with_the_same_name_and_shapes_and_resets_on_reset_weights() -> None:
    assert SPACE.inherit is not None
    parent = _vars("parent", {"e2": {"kernel": (3, 3, 3, 8)}, "v1_bn": {"scale": (8,), "bias": (8,), "mean": (8,),
                                                                          "var": (8,)},
                              "classifier": {"kernel": (8, 10), "bias": (10,)}})
    fresh = _vars("fresh", {"e2": {"kernel": (3, 3, 3, 16)}, "v1_bn": {"scale": (16,), "bias": (16,), "mean": (16,),
                                                                        "var": (16,)},
                            "e9": {"kernel": (3, 3, 16, 16)}, "classifier": {"kernel": (8, 10), "bias": (10,)}})
    g = _net()
    chosen, count = SPACE.inherit(g, g, "alter_channels e2: 8->16", parent, fresh)
    assert count == 8 * 10 + 10
    assert chosen["params"]["classifier"]["kernel"].tag == "parent"
    assert chosen["params"]["e2"]["kernel"].tag == "fresh" and chosen["params"]["e9"]["kernel"].tag == "fresh"
    assert chosen["batch_stats"]["v1_bn"]["mean"].tag == "fresh"
    same, count = SPACE.inherit(g, g, "identity", parent, parent)
    assert count == 3 * 3 * 3 * 8 + 2 * 8 + 8 * 10 + 10
    assert same["batch_stats"]["v1_bn"]["var"].tag == "parent"
    reset, count = SPACE.inherit(g, g, "reset_weights", parent, fresh)
    assert count == 0 and reset == fresh
    # A layer whose leaves differ only in dtype is not the same layer.
    half = {"params": {"classifier": {"kernel": _Array((8, 10), "parent", "bfloat16"), "bias": _Array((10,), "p")}}}
    assert SPACE.inherit(g, g, "identity", half, {"params": {"classifier": parent["params"]["classifier"]}})[1] == 0
    with pytest.raises(spaces.SpaceError, match="lse genomes"):
        SPACE.inherit(spaces.get("nb201").sample(random.Random(0)), g, "identity", parent, fresh)
