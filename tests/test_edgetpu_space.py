"""The EfficientNet-EdgeTPU block space (pure): genomes, validation, decisions, mutations, the lowering's
counts against the published S / M / L sizes, pricing at the deployed network, the training presets."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spaces
from genome import GenomeError, canonical_json
from genome.edgetpu import (
    COMPOUND,
    DECISION_KINDS,
    EFFICIENTNET_EDGETPU_S,
    SKELETON,
    EdgeTPUGenome,
    Stage,
    choices_of,
    plan,
    round_filters,
    scale_genome,
    stem_stride,
)
from latency import LoweringError, estimate
from latency.ir import ADD, CONV, DENSE, DEPTHWISE, MEAN, POINTWISE
from mutations import MutationError
from mutations.edgetpu import StageMutation

pytestmark = pytest.mark.unit

SPACE = spaces.get("edgetpu")
S = spaces.named_genome("efficientnet-edgetpu-s")
seeds = st.integers(min_value=0, max_value=2**63)


def _differences(a: EdgeTPUGenome, b: EdgeTPUGenome) -> list[tuple[int, str]]:
    return [(i, k) for i, (x, y) in enumerate(zip(a.stages, b.stages, strict=True)) for k in DECISION_KINDS
            if getattr(x, k) != getattr(y, k)]


# --- genomes -----------------------------------------------------------------------------------------------


def test_the_space_is_a_registry_entry_with_the_deployed_network() -> None:
    assert "edgetpu" in spaces.names() and SPACE.model == "nets.edgetpu:build"
    # Latency is priced for the deployed network unless an objective overrides it.
    assert dict(SPACE.network) == {"input_size": 224, "num_classes": 1000, "width": 1.0, "depth": 1.0}
    assert SPACE.configs == {"train": "edgetpu-tiny"}
    assert set(SPACE.named) == {"efficientnet-edgetpu-s", "efficientnet-edgetpu-m", "efficientnet-edgetpu-l"}


def test_s_is_expressed_exactly_and_its_json_round_trips() -> None:
    assert S == EFFICIENTNET_EDGETPU_S and S.space == "edgetpu" and not S.scaled
    assert [(s.block, s.kernel, s.expansion, s.layers, s.filters) for s in S.stages] == [
        ("fused", 3, 4, 1, 24), ("fused", 3, 8, 2, 32), ("fused", 3, 8, 4, 48),
        ("mbconv", 5, 8, 5, 96), ("mbconv", 5, 8, 4, 144), ("mbconv", 5, 8, 2, 192)]
    text = canonical_json(S.to_json())
    assert text.startswith('{"space":"edgetpu","stages":[{"block":"fused","expansion":4,"filters":24')
    assert spaces.parse_genome(text) == S and spaces.parse_genome(json.loads(text)) == S
    assert S.summary() == "F3e4x1/24 F3e8x2/32 F3e8x4/48 M5e8x5/96 M5e8x4/144 M5e8x2/192"
    assert len(S.fingerprint) == 16 and S.fingerprint == EdgeTPUGenome(S.stages, 1, 1.0).fingerprint


def test_scaled_genomes_are_ordinary_genomes() -> None:
    m = spaces.named_genome("efficientnet-edgetpu-m")
    assert (m.depth, m.width) == (1.1, 1.0) and m.stages == S.stages and m.fingerprint != S.fingerprint
    data = m.to_json()
    assert data["scale"] == {"depth": 1.1, "width": 1.0}
    assert spaces.parse_genome(canonical_json(data)) == m
    assert "depth 1.1" in m.summary()
    # Unscaled coefficients leave no trace in the JSON (one canonical form), and scaling is from the base.
    assert "scale" not in scale_genome(m, 1.0, 1.0).to_json()
    assert scale_genome(m, 1.4, 1.2) == spaces.named_genome("efficientnet-edgetpu-l")
    assert m.base() == S


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(stages=d["stages"][:5]), "exactly 6 stages, got 5"),
    (lambda d: d.update(space="nasnet"), "not 'edgetpu'"),
    (lambda d: d.update(extra=1), "unknown keys: extra"),
    (lambda d: d["stages"][0].update(block="sep"), "stage 0: block must be one of fused, mbconv"),
    (lambda d: d["stages"][1].update(kernel=7), "stage 1: kernel must be one of 3, 5, got 7"),
    (lambda d: d["stages"][2].update(expansion=6), "stage 2: expansion must be one of 4, 8, got 6"),
    (lambda d: d["stages"][0].update(layers=0), r"stage 0: layers must be one of 1, 2 \(the base 1 -1, 0, \+1"),
    (lambda d: d["stages"][3].update(filters=100), r"stage 3: filters must be one of 72, 96, 120 \(the base 96"),
    (lambda d: d["stages"][3].update(filters=96.0), "stage 3: filters must be one of"),
    (lambda d: d["stages"][4].update(layers=True), "stage 4: layers must be one of 3, 4, 5"),
    (lambda d: d["stages"][5].pop("kernel"), "stage 5 is missing kernel"),
    (lambda d: d["stages"][5].update(se=True), "stage 5 has unknown keys: se"),
    (lambda d: d.update(scale={"depth": 0}), r"scale depth must be a number in \(0, 8\]"),
    (lambda d: d.update(scale={"width": float("nan")}), "scale width must be a number"),
    (lambda d: d.update(scale={"resolution": 240}), "the input resolution is the network's input_size"),
    (lambda d: d.update(scale=[1.1]), "scale must be an object"),
])
def test_validation_says_what_is_wrong(change: object, message: str) -> None:
    data = S.to_json()
    change(data)  # type: ignore[operator]
    with pytest.raises(GenomeError, match=message):
        SPACE.parse(data)


def test_the_choices_of_each_stage() -> None:
    assert [s.stride for s in SKELETON] == [1, 2, 2, 2, 1, 2]
    assert [choices_of(i, "layers") for i in range(6)] == [(1, 2), (1, 2, 3), (3, 4, 5), (4, 5, 6), (3, 4, 5), (1, 2, 3)]
    # The base x 0.75 / 1 / 1.25, to the nearest multiple of 8.
    assert [choices_of(i, "filters") for i in range(6)] == [
        (16, 24, 32), (24, 32, 40), (40, 48, 64), (72, 96, 120), (112, 144, 184), (144, 192, 240)]
    assert all(f % 8 == 0 for i in range(6) for f in choices_of(i, "filters"))


def test_the_decision_layout() -> None:
    decisions = SPACE.decisions(S)
    assert len(decisions) == 30
    assert decisions[:5] == (0, 0, 0, 0, 1) and decisions[15:20] == (1, 1, 1, 1, 1)
    kinds = [SPACE.next_decision(decisions[:i]) for i in range(30)]
    assert [d.kind for d in kinds[:5]] == list(DECISION_KINDS)  # type: ignore[union-attr]
    assert [d.choices for d in kinds[:5]] == [2, 2, 2, 2, 3] and kinds[8].choices == 3  # type: ignore[union-attr]
    assert SPACE.from_decisions(decisions) == S
    # Scaling is not a decision: the decision view of M is S's.
    assert SPACE.from_decisions(SPACE.decisions(spaces.named_genome("efficientnet-edgetpu-m"))) == S


@settings(max_examples=300, deadline=None)
@given(seed=seeds)
def test_sampled_genomes_are_valid_and_cover_the_choices(seed: int) -> None:
    g = SPACE.sample(random.Random(seed))
    assert SPACE.parse(canonical_json(g.to_json())) == g
    assert SPACE.from_decisions(SPACE.decisions(g)) == g


def test_sampling_reaches_every_value() -> None:
    rng = random.Random(0)
    seen = Counter((i, k, getattr(s, k)) for _ in range(400) for i, s in enumerate(SPACE.sample(rng).stages)
                   for k in DECISION_KINDS)
    assert all(seen[(i, k, v)] > 0 for i in range(6) for k in DECISION_KINDS for v in choices_of(i, k))


# --- mutations --------------------------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(genome_seed=seeds, mutation_seed=seeds, which=st.sampled_from([None, *DECISION_KINDS]))
def test_a_stage_mutation_changes_exactly_one_decision(genome_seed: int, mutation_seed: int, which: str | None) -> None:
    parent = SPACE.sample(random.Random(genome_seed))
    before = canonical_json(parent.to_json())
    result = StageMutation(which)(parent, random.Random(mutation_seed))
    child = result.genome
    assert isinstance(child, EdgeTPUGenome)
    assert canonical_json(parent.to_json()) == before
    diffs = _differences(parent, child)
    assert len(diffs) == 1 and (which is None or diffs[0][1] == which)
    assert result.description.startswith(f"stage {diffs[0][0]} {diffs[0][1]}:")
    assert SPACE.parse(child.to_json()) == child


@settings(max_examples=200, deadline=None)
@given(genome_seed=seeds, mutation_seed=seeds, steps=st.integers(min_value=1, max_value=60),
       scaled=st.booleans())
def test_long_chains_of_default_mutations_stay_valid_and_keep_the_scaling(genome_seed: int, mutation_seed: int,
                                                                         steps: int, scaled: bool) -> None:
    op = SPACE.build_mutation()
    g = SPACE.sample(random.Random(genome_seed))
    if scaled:
        g = scale_genome(g, 1.4, 1.2)
    rng = random.Random(mutation_seed)
    for _ in range(steps):
        result = op(g, rng)
        child = result.genome
        assert isinstance(child, EdgeTPUGenome)
        n = len(_differences(g, child))
        assert n in (0, 1) and (n == 0) == (result.description == "identity")
        assert (child.depth, child.width) == (g.depth, g.width)
        assert SPACE.parse(canonical_json(child.to_json())) == child
        decisions = SPACE.decisions(child)
        assert SPACE.from_decisions(decisions) == child.base()
        g = child


def test_the_default_mutation_is_five_percent_identity() -> None:
    op = SPACE.build_mutation()
    assert op.to_spec() == {"type": "choice", "options": [{"weight": 0.05, "op": {"type": "identity"}},
                                                          {"weight": 0.95, "op": {"type": "stage"}}]}
    rng = random.Random(7)
    counts = Counter(op(S, rng).description == "identity" for _ in range(10000))
    assert 400 < counts[True] < 600
    assert SPACE.build_mutation({"type": "stage", "decision": "kernel"}).to_spec() == {"type": "stage",
                                                                                        "decision": "kernel"}
    with pytest.raises(MutationError, match="decision must be one of block, kernel"):
        SPACE.build_mutation({"type": "stage", "decision": "se"})
    with pytest.raises(MutationError, match="applies to edgetpu genomes"):
        StageMutation()(spaces.named_genome("nasnet-a"), random.Random(0))


# --- the network: plan, lowering, counts against the published sizes -------------------------------------


def test_the_plan_of_s() -> None:
    p = plan(S)
    assert p.stem_filters == 32 and p.head_filters == 1280 and len(p.blocks) == 18
    first = p.blocks[0]
    # The reference's block table: the first block expands from 24 channels' worth although its input has 32.
    assert (first.in_filters, first.expanded, first.out_filters, first.skip) == (32, 96, 24, False)
    assert [b.skip for b in p.blocks[1:3]] == [False, True]  # stride 2 first, then stride 1 at equal widths
    assert all(b.expanded == b.in_filters * 8 for b in p.blocks[1:])
    assert round_filters(1280, 1.2) == 1536 and round_filters(24, 1.2) == 32 and round_filters(24, 0.25) == 8


def test_the_lowering_of_s_has_the_published_size_and_only_edge_tpu_ops() -> None:
    graph = SPACE.graph(S)
    assert graph.input_shape == (224, 224, 3) and graph.output_shape == (1000,)
    # tensorflow/tpu efficientnet/edgetpu README: EfficientNet-EdgeTPU-S has 5.4 M parameters.
    assert graph.total_params() == pytest.approx(5.4e6, rel=0.05)
    kinds = graph.count_by_kind()
    # Only ops the Edge TPU compiler maps (convolutions, depthwise, adds, the mean, the classifier), so an
    # export maps every op to the chip.
    assert set(kinds) == {CONV, POINTWISE, DEPTHWISE, ADD, MEAN, DENSE}
    assert kinds[DEPTHWISE] == 11 and kinds[CONV] == 1 + 7  # the stem and the fused blocks' expansions
    report = estimate(graph, "usb3")
    assert report.fits_on_chip and not report.fallback_ops
    # Coral's benchmark: 5.1 ms on the USB Accelerator (the calibration point; the model is within 5 %).
    assert report.latency_ms == pytest.approx(5.1, rel=0.05)
    assert SPACE.price(S, SPACE.latency_settings()) == (report.latency_ms, True)


@pytest.mark.parametrize(("name", "published"), [("M", 6.9e6), ("L", 10.6e6)])
def test_compound_scaling_matches_the_published_sizes(name: str, published: float) -> None:
    c = COMPOUND[name]
    scaled = scale_genome(S, c.depth, c.width)
    graph = SPACE.graph(scaled, input_size=c.resolution)
    assert graph.total_params() == pytest.approx(published, rel=0.05)
    assert graph.input_shape == (c.resolution, c.resolution, 3)


def test_layers_round_up_and_filters_round_to_multiples_of_eight() -> None:
    m = plan(scale_genome(S, 1.1, 1.0))
    per_stage = Counter(b.stage for b in m.blocks)
    assert [per_stage[i] for i in range(6)] == [2, 3, 5, 6, 5, 3]  # ceil(1.1 x (1, 2, 4, 5, 4, 2))
    big = plan(scale_genome(S, 1.4, 1.2))
    assert [b.out_filters for b in big.blocks if b.index == 0] == [32, 40, 56, 112, 176, 232]
    # A network's width/depth multipliers compose with the genome's coefficients.
    assert plan(S, width=1.2, depth=1.4) == big


def test_the_stem_adapts_to_small_inputs() -> None:
    assert stem_stride(224) == 2 and stem_stride(128) == 2 and stem_stride(32) == 1
    cifar = SPACE.graph(S, input_size=32, num_classes=10)
    assert cifar.layers[0].out_shape == (32, 32, 32)
    head = next(layer for layer in cifar.layers if layer.name == "head/conv")
    assert head.out_shape == (2, 2, 1280)  # as 224 reaches the head at 7x7
    assert SPACE.graph(S).layers[0].out_shape == (112, 112, 32)


def test_a_proxy_is_priced_as_the_deployed_network() -> None:
    # The shipped configs' objective names the deployed network; a training network never enters pricing.
    from configs import load_config
    from orchestrator.config import experiment_context, parse_spec

    for name in ("edgetpu-tiny", "edgetpu-cifar", "edgetpu-search"):
        spec = parse_spec(load_config(name))
        space, _, objective, latency_settings = experiment_context(spec)
        assert space is SPACE and objective.kind == "mnas" and objective.target_ms == 6.0
        assert objective.on_chip_bonus == 0.05 and objective.soft_exponent == objective.hard_exponent == -0.07
        assert latency_settings.network_dict() == {"input_size": 224, "num_classes": 1000, "width": 1.0, "depth": 1.0}
        assert latency_settings.device == "usb3"
    settings_ = SPACE.latency_settings({"input_size": 224, "device": "usb3"})
    assert SPACE.price(S, settings_)[0] == pytest.approx(estimate(SPACE.graph(S)).latency_ms)


def test_bad_network_settings_are_refused() -> None:
    with pytest.raises(Exception, match="unknown latency setting 'cells'"):
        SPACE.latency_settings({"cells": 3})
    with pytest.raises(LoweringError, match="input size"):
        SPACE.lower(S, {**SPACE.network, "input_size": 4})
    with pytest.raises(LoweringError, match="network width"):
        SPACE.lower(S, {**SPACE.network, "width": -1.0})


# --- the training presets ----------------------------------------------------------------------------------


def test_the_training_presets_of_the_space() -> None:
    from worker.training.presets import TrainingConfigError, resolve_training

    tiny = resolve_training({"preset": "edgetpu-tiny"})
    assert tiny.network_dict() == {"depth": 0.16, "width": 0.25} and tiny.image_size == 16
    assert tiny.to_json()["network"] == {"depth": 0.16, "width": 0.25}
    # Keys update the preset's network rather than replace it.
    assert resolve_training({"preset": "edgetpu-tiny", "network": {"width": 0.5}}).network_dict() == {
        "depth": 0.16, "width": 0.5}
    search = resolve_training({"preset": "edgetpu-search"})
    assert (search.dataset, search.image_size, search.epochs) == ("imagenet", 224, 5)  # MnasNet's proxy
    cifar = resolve_training({"preset": "edgetpu-cifar"})
    assert (cifar.dataset, cifar.image_size, cifar.network) == ("cifar10", 32, ())
    # The cell spaces' presets are as they were.
    assert resolve_training({"preset": "tiny"}).network == ()
    for bad, message in (([1], "must be a mapping"), ({"width": True}, "network.width must be a number"),
                         ({"width": -1}, "network.width must be positive"), ({3: 1}, "keys must be strings")):
        with pytest.raises(TrainingConfigError, match=message):
            resolve_training({"preset": "edgetpu-tiny", "network": bad})


def test_the_corners_of_the_space_lower() -> None:
    largest = EdgeTPUGenome(tuple(Stage("fused", 5, 8, max(choices_of(i, "layers")), max(choices_of(i, "filters")))
                                  for i in range(6)))
    smallest = EdgeTPUGenome(tuple(Stage("mbconv", 3, 4, 1, min(choices_of(i, "filters"))) for i in range(6)))
    big, small = estimate(SPACE.graph(largest)), estimate(SPACE.graph(smallest))
    assert big.params > 5 * small.params and big.latency_ms > small.latency_ms
    assert not big.fits_on_chip and small.fits_on_chip
