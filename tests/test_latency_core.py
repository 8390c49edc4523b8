"""The pure latency core: IR costs, the hardware model's shape dependence, memories, fallback, lowering, cache."""

from __future__ import annotations

import random
import time

import pytest

import spaces
from genome import NASNET_OPS
from latency import LatencyError, LatencySettingsError, LoweringError, estimate, resolve_settings
from latency import nasnet as nasnet_lowering
from latency import nb201 as nb201_lowering
from latency.builder import check_args
from latency.hardware import PARAM_CACHE_BYTES, PROFILES, utilization
from latency.ir import (
    DENSE,
    DEPTHWISE,
    GRAPH_INPUT,
    POINTWISE,
    UNSUPPORTED,
    Graph,
    GraphBuilder,
    IRError,
    Layer,
    conv_layer,
)
from latency.nasnet import NASNET_OP_LOWERING, lower_nasnet
from latency.nb201 import lower_nb201

pytestmark = pytest.mark.unit

NASNET = spaces.get("nasnet")
NB201 = spaces.get("nb201")


def lower_genome(genome, **network):
    """The latency IR of ``genome``'s network: its space's standard network with ``network`` keys overridden."""
    return spaces.get(genome.space).graph(genome, **network)


def _dense_graph(features: int, inputs: int) -> Graph:
    b = GraphBuilder("dense", (inputs,))
    b.add(Layer("fc", DENSE, (GRAPH_INPUT,), ((inputs,),), (features,), weights=inputs * features,
                params=inputs * features + features, macs=inputs * features))
    return b.build()


def test_op_lowering_table_covers_exactly_the_genome_ops() -> None:
    assert tuple(NASNET_OP_LOWERING) == NASNET_OPS


def test_conv_layer_counts_macs_weights_and_shapes() -> None:
    layer = conv_layer("c", GRAPH_INPUT, (32, 32, 16), 24, (3, 3), (2, 2))
    assert layer.out_shape == (16, 16, 24)
    assert layer.weights == 3 * 3 * 16 * 24
    assert layer.macs == 16 * 16 * 24 * 3 * 3 * 16
    dw = conv_layer("d", GRAPH_INPUT, (32, 32, 16), 0, (5, 5), depthwise=True)
    assert dw.kind == DEPTHWISE and dw.out_shape == (32, 32, 16) and dw.macs == 32 * 32 * 16 * 25
    assert conv_layer("p", GRAPH_INPUT, (8, 8, 4), 8, (1, 1)).kind == POINTWISE
    valid = conv_layer("v", GRAPH_INPUT, (299, 299, 3), 32, (3, 3), (2, 2), padding="VALID")
    assert valid.out_shape == (149, 149, 32)


def test_graph_builder_rejects_forward_references_and_unknown_kinds() -> None:
    b = GraphBuilder("g", (4, 4, 3))
    with pytest.raises(IRError, match="not an earlier layer"):
        b.add(Layer("x", POINTWISE, (0,), ((4, 4, 3),), (4, 4, 3)))
    with pytest.raises(IRError, match="unknown kind"):
        b.add(Layer("x", "fft", (GRAPH_INPUT,), ((4, 4, 3),), (4, 4, 3)))


def test_utilization_depends_on_kind_and_shape() -> None:
    pw = conv_layer("p", GRAPH_INPUT, (28, 28, 256), 256, (1, 1))
    dw = conv_layer("d", GRAPH_INPUT, (28, 28, 256), 0, (3, 3), depthwise=True)
    assert utilization(dw) < 0.2 * utilization(pw)  # depthwise far below pointwise
    # 72 output channels need two passes over the 64-wide cell rows, the second 1/8 full.
    assert utilization(conv_layer("a", GRAPH_INPUT, (28, 28, 64), 72, (1, 1))) < 0.6 * utilization(
        conv_layer("b", GRAPH_INPUT, (28, 28, 64), 64, (1, 1)))
    # A 7x7 map leaves some of the 16 tiles idle; an 8x8 map does not.
    assert utilization(conv_layer("s", GRAPH_INPUT, (7, 7, 64), 64, (1, 1))) < utilization(
        conv_layer("t", GRAPH_INPUT, (8, 8, 64), 64, (1, 1)))
    # Three input channels fill three of a cell's four lanes.
    assert utilization(conv_layer("rgb", GRAPH_INPUT, (32, 32, 3), 64, (3, 3))) == pytest.approx(
        0.75 * utilization(conv_layer("c4", GRAPH_INPUT, (32, 32, 4), 64, (3, 3))))


def test_parameters_beyond_the_cache_stream_over_the_link_every_inference() -> None:
    small = estimate(_dense_graph(1000, 1000), "usb3")
    assert small.fits_on_chip and small.streamed_bytes == 0 and small.on_chip_param_bytes > 1_000_000
    big = estimate(_dense_graph(4000, 4000), "usb3")  # 16 MB of int8 weights
    assert not big.fits_on_chip and big.on_chip_param_bytes == 0
    assert big.streamed_bytes == 16_000_000 + 8 * 4000
    link = PROFILES["usb3"].link_bytes_per_s
    assert big.latency_ms >= big.streamed_bytes / link * 1e3
    assert estimate(_dense_graph(4000, 4000), "usb2").latency_ms > 10 * big.latency_ms - 10
    assert PARAM_CACHE_BYTES == 8 * 1024 * 1024


def test_unsupported_op_splits_the_graph_and_the_rest_runs_on_the_cpu() -> None:
    b = GraphBuilder("split", (16, 16, 8))
    a = b.add(conv_layer("c1", GRAPH_INPUT, (16, 16, 8), 8, (3, 3)))
    u = b.add(Layer("weird", UNSUPPORTED, (a,), ((16, 16, 8),), (16, 16, 8), op="erf"))
    b.add(conv_layer("c2", u, (16, 16, 8), 8, (3, 3)))
    report = estimate(b.build(), "usb3")
    assert [c.where for c in report.layers] == ["tpu", "cpu", "cpu"]
    assert report.fallback_ops == ("erf", "conv")
    assert not report.fits_on_chip
    assert report.layers[1].bytes_moved == 16 * 16 * 8  # the split tensor crosses the link
    assert report.cpu_ms > 0


def test_bad_device_and_clock_are_rejected() -> None:
    graph = _dense_graph(10, 10)
    with pytest.raises(LatencyError, match="unknown device"):
        estimate(graph, "usb4")
    with pytest.raises(LatencyError, match="clock"):
        estimate(graph, "usb3", clock_mhz=300)


def test_clock_and_link_change_latency_in_the_expected_direction() -> None:
    graph = lower_genome(spaces.named_genome("amoebanet-a"), cells=2, filters=16)
    fast, slow = estimate(graph, "usb3", 500), estimate(graph, "usb3", 250)
    assert slow.tpu_ms == pytest.approx(2 * fast.tpu_ms, rel=0.01)
    assert estimate(graph, "usb2").latency_ms > fast.latency_ms


def test_lowering_reproduces_the_macro_structure() -> None:
    genome = spaces.named_genome("nasnet-a")
    graph = lower_genome(genome, cells=2, filters=8)
    counts = graph.count_by_kind()
    assert counts["dense"] == 1 and counts["mean"] == 1
    assert graph.output_shape == (10,)
    cells = {layer.name.split("/")[0] for layer in graph.layers}
    assert {c for c in cells if c.startswith("cell")} == {f"cell{i}" for i in range(6)}  # 3 stacks of N = 2
    assert {c for c in cells if c.startswith("reduction")} == {"reduction1", "reduction2"}
    # Reduction cells halve the spatial size twice: 32 -> 16 -> 8 before the head.
    assert graph.layers[-2].in_shapes[0][:2] == (8, 8)
    deeper = lower_genome(genome, cells=3, filters=8)
    wider = lower_genome(genome, cells=2, filters=16)
    assert deeper.total_macs() > graph.total_macs() and wider.total_params() > 3 * graph.total_params()
    imagenet = lower_genome(genome, cells=2, filters=16, input_size=224, num_classes=1000)
    assert imagenet.layers[0].out_shape == (111, 111, 32)
    assert imagenet.layers[-2].in_shapes[0][:2] == (7, 7)


def test_nb201_lowering() -> None:
    convs = spaces.parse_genome("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    skips = spaces.parse_genome("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|")
    g_conv = lower_genome(convs, cells=5, filters=16)
    g_skip = lower_genome(skips, cells=5, filters=16)
    # 15 cells x 6 conv3x3 edges; the skeleton adds the stem, two residual blocks (3 convs each).
    assert g_conv.count_by_kind()["conv"] == 15 * 6 + 1 + 4
    assert g_skip.count_by_kind().get("conv", 0) == 1 + 4
    assert estimate(g_conv).latency_ms > estimate(g_skip).latency_ms
    assert g_conv.layers[-1].out_shape == (10,) and g_conv.layers[-3].out_shape == (8, 8, 64)
    # No path from input to output: the network computes a constant after the stem.
    dead = lower_genome(spaces.parse_genome("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"), cells=5, filters=16)
    assert [layer.name for layer in dead.layers] == ["stem/conv"]
    assert 0 < estimate(dead).latency_ms < estimate(g_conv).latency_ms


def test_lowering_rejects_bad_arguments() -> None:
    amoeba = spaces.named_genome("amoebanet-a")
    with pytest.raises(LoweringError, match="cells"):
        lower_nasnet(amoeba, cells=0, filters=8)
    with pytest.raises(LoweringError, match="num_classes"):
        lower_nasnet(amoeba, cells=1, filters=8, num_classes=0)
    with pytest.raises(LoweringError, match="input size"):
        lower_nb201(NB201.sample(random.Random(0)), input_size=4)
    with pytest.raises(LoweringError, match="filters"):
        check_args(1, 0, 32, 10)
    # Through a space, the network settings are checked before lowering, naming the key.
    with pytest.raises(LatencySettingsError, match="latency cells must be an integer"):
        lower_genome(amoeba, cells=0, filters=8)
    with pytest.raises(LatencySettingsError, match="latency num_classes must be an integer"):
        lower_genome(amoeba, cells=1, filters=8, num_classes=0)
    with pytest.raises(LatencySettingsError, match="unknown latency setting 'depth'"):
        lower_genome(amoeba, depth=3)
    # A value the settings accept but the lowering refuses is a LoweringError.
    with pytest.raises(LoweringError, match="input size"):
        lower_genome(amoeba, input_size=4)
    with pytest.raises(LoweringError, match="input size"):
        NASNET.latency_settings({"input_size": 4})


def test_latency_settings_resolve_the_standard_network() -> None:
    assert dict(NASNET.network) == {"cells": 3, "filters": 24, "input_size": 32, "num_classes": 10, "dataset": None}
    assert dict(NB201.network) == {"cells": 5, "filters": 16, "input_size": 32, "num_classes": 10}
    standard = NASNET.latency_settings()
    assert standard.network_dict() == dict(NASNET.network)
    assert (standard.device, standard.clock_mhz) == ("usb3", None)
    assert standard == resolve_settings(NASNET.network, None)
    wide = NASNET.latency_settings({"filters": 36, "device": "usb2", "clock_mhz": 250, "dataset": "imagenet"})
    assert wide.network_dict() == {**NASNET.network, "filters": 36, "dataset": "imagenet"}
    assert (wide.device, wide.clock_mhz) == ("usb2", 250)
    assert wide.to_json()["device"] == "usb2" and wide.to_json()["filters"] == 36
    # Settings are hashable values (the estimate memo keys on them).
    assert hash(wide) == hash(NASNET.latency_settings({"filters": 36, "device": "usb2", "clock_mhz": 250,
                                                      "dataset": "imagenet"}))
    for bad, message in (({"device": "usb4"}, "device must be one of"), ({"clock_mhz": 300}, "clock_mhz"),
                         ({"filters": True}, "boolean"), ({"filters": 1.5}, "filters must be an integer"),
                         ({"dataset": 3}, "dataset must be a string"), ({"cell": 3}, "unknown latency setting")):
        with pytest.raises(LatencySettingsError, match=message):
            NASNET.latency_settings(bad)
    # An NB201 network has no dataset key.
    with pytest.raises(LatencySettingsError, match="unknown latency setting 'dataset'"):
        NB201.latency_settings({"dataset": "imagenet"})


def test_space_graph_is_the_standard_network_with_overrides() -> None:
    genome = spaces.named_genome("nasnet-a")
    assert NASNET.graph(genome).layers == lower_nasnet(genome, cells=3, filters=24).layers
    assert NASNET.graph(genome, cells=2, filters=8).layers == lower_nasnet(genome, cells=2, filters=8).layers
    assert NASNET.graph(genome, input_size=64, dataset="imagenet").layers == lower_nasnet(
        genome, cells=3, filters=24, input_size=64, stem="imagenet").layers
    cell = NB201.sample(random.Random(4))
    assert NB201.graph(cell).layers == lower_nb201(cell, cells=5, filters=16).layers
    assert NB201.lower(cell, {"cells": 2, "filters": 8, "input_size": 32, "num_classes": 10}).layers == (
        lower_nb201(cell, cells=2, filters=8).layers)
    # price() is the (latency, fits on chip) of estimate().
    settings = NB201.latency_settings()
    report = NB201.estimate(cell, settings)
    assert NB201.price(cell, settings) == (report.latency_ms, report.fits_on_chip)
    assert report.latency_ms == pytest.approx(estimate(NB201.graph(cell)).latency_ms, rel=1e-12)


def test_estimate_genome_is_cached_and_fast() -> None:
    spaces.clear_cache()
    space = spaces.get("nasnet")
    rng = random.Random(7)
    genomes = [space.sample(rng) for _ in range(10)]
    settings = space.latency_settings({"cells": 3, "filters": 24})
    started = time.perf_counter()
    reports = [space.estimate(g, settings) for g in genomes]
    per_genome_ms = (time.perf_counter() - started) / len(genomes) * 1e3
    assert per_genome_ms < 50  # generous for a loaded CI machine; README has the measured figure
    again = space.estimate(genomes[0], space.latency_settings({"cells": 3, "filters": 24}))
    assert again is reports[0]
    assert space.estimate(genomes[0], space.latency_settings({"device": "usb2"})) is not reports[0]
    # clear_cache forgets the estimates and the fast path's per-cell totals (benchmarks time the uncached cost).
    assert nasnet_lowering._cell_totals
    spaces.clear_cache()
    assert not nasnet_lowering._cell_totals
    assert space.estimate(genomes[0], settings) is not reports[0]
    assert space.estimate(genomes[0], settings) == reports[0]
    assert all(r.latency_ms > 0 and r.fits_on_chip for r in reports)
    assert len({round(r.latency_ms, 6) for r in reports}) > 5  # genomes differ in latency


def test_the_objective_path_equals_the_full_estimate() -> None:
    # space.estimate(layers=False) sums memoized per-cell totals with cell-level liveness; it must give
    # exactly what lowering every layer gives, dead cells included (a normal cell that never reads
    # state 0 leaves the cell before the last one dead).
    spaces.clear_cache()
    space = spaces.get("nasnet")
    rng = random.Random(11)
    never_reads_0 = space.parse({"normal": {"combinations": [[[1, "sep_conv_3x3"], [1, "identity"]]] * 5},
                                 "reduction": spaces.named_genome("nasnet-a").to_json()["reduction"]})
    genomes = [never_reads_0, *(space.sample(rng) for _ in range(25)), spaces.named_genome("amoebanet-a")]
    for i, genome in enumerate(genomes):
        for cells, filters, size, dataset in ((1, 5, 32, None), (3, 12, 32, None), (1, 16, 64, "imagenet"))[: 3 if i < 4 else 1]:
            settings = space.latency_settings({"cells": cells, "filters": filters, "input_size": size,
                                               "dataset": dataset, "device": "usb2", "clock_mhz": 250})
            fast = space.estimate(genome, settings, layers=False)
            full = estimate(lower_genome(genome, cells=cells, filters=filters, input_size=size, dataset=dataset),
                            "usb2", 250)
            assert fast.layers == () and fast.fits_on_chip == full.fits_on_chip
            assert (fast.macs, fast.params, fast.on_chip_param_bytes) == (full.macs, full.params, full.on_chip_param_bytes)
            assert fast.latency_ms == pytest.approx(full.latency_ms, rel=1e-9)
    big = spaces.named_genome("amoebanet-a")  # 87 M parameters: streaming depends on layer order, full path
    settings = space.latency_settings({"cells": 6, "filters": 190, "input_size": 224, "num_classes": 1000})
    fast = space.estimate(big, settings, layers=False)
    assert not fast.fits_on_chip and fast.streamed_bytes > 0
    assert fast.layers == ()
    # layers=True gives the per-layer breakdown of the same estimate.
    full = space.estimate(big, settings, layers=True)
    assert len(full.layers) == len(space.graph(big, **settings.network_dict()).layers)
    assert full.latency_ms == pytest.approx(fast.latency_ms, rel=1e-9)


def test_the_nb201_objective_path_equals_the_full_estimate() -> None:
    # The server prices every NB201 child at proposal through the per-cell fast path: the same report as
    # lowering every layer, for cells that pass their input through (the head's BN then folds into a layer
    # of an earlier cell, or the residual block's add), dead edges, and networks of every size.
    spaces.clear_cache()
    passthrough = NB201.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    pool_last = NB201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|")
    dead_edge = NB201.parse("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    rng = random.Random(5)
    genomes = [passthrough, pool_last, dead_edge, *rng.sample(NB201.codec.all_genomes(), 60)]
    priced = 0
    for genome in genomes:
        for cells, filters, size, classes, device in ((5, 16, 32, 10, "usb3"), (1, 8, 16, 3, "usb2"),
                                                      (2, 24, 64, 100, "pcie")):
            settings = NB201.latency_settings({"cells": cells, "filters": filters, "input_size": size,
                                               "num_classes": classes, "device": device})
            fast = NB201.estimate(genome, settings, layers=False)
            full = estimate(lower_nb201(genome, cells=cells, filters=filters, input_size=size, num_classes=classes),
                            device)
            assert fast.layers == () and (fast.fits_on_chip, fast.graph) == (full.fits_on_chip, full.graph)
            assert (fast.macs, fast.params, fast.on_chip_param_bytes, fast.spill_bytes) == (
                full.macs, full.params, full.on_chip_param_bytes, full.spill_bytes), genome.to_arch_str()
            assert fast.latency_ms == pytest.approx(full.latency_ms, rel=1e-12)
            priced += 1
    assert priced == 3 * len(genomes) and nb201_lowering._cells  # the per-cell totals were memoized
    # A cell whose output is a constant, and a network too large for the on-chip cache: the full path decides.
    constant = NB201.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    network = {"input_size": 32, "num_classes": 10, "cells": 5, "filters": 16, "device": "usb3", "clock_mhz": None}
    assert nb201_lowering.estimate_fast(constant, **network) is None
    huge = {**network, "filters": 256, "input_size": 64}
    assert nb201_lowering.estimate_fast(dead_edge, **huge) is None
    assert not NB201.estimate(dead_edge, NB201.latency_settings({"filters": 256, "input_size": 64})).fits_on_chip
    spaces.clear_cache()
    assert not nb201_lowering._cells
