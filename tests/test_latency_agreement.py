"""The two front ends agree: lowering a genome and tracing nets.build_model's network give the same IR.

Both fold batch norm into the preceding layer and fuse ReLU (as the Edge TPU compiler does), so they
match layer for layer: same kinds, same wiring, same MACs and parameters, hence the same latency.
"""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import pytest

import spaces
from genome import NASNET_OPS, Genome
from latency import estimate
from latency.ir import Graph
from latency.nasnet import NASNET_OP_LOWERING
from nets.build import build_model
from nets.ops import OPS
from nets.trace import trace_module

pytestmark = pytest.mark.jax


def lower_genome(genome: Genome, *, cells: int, filters: int, input_size: int, num_classes: int,
                 dataset: str) -> Graph:
    """The genome's space lowers its standard network with these keys overridden (NB201 has no stems)."""
    space = spaces.get(genome.space)
    network = {"cells": cells, "filters": filters, "input_size": input_size, "num_classes": num_classes}
    if "dataset" in space.network:
        network["dataset"] = dataset
    return space.graph(genome, **network)

_rng = random.Random(2026)
_random_nasnet = [spaces.get("nasnet").sample(_rng) for _ in range(2)]
# Three outputs of F channels: later stack-1 cells read two (32, 32, 3F) tensors, as the first cell reads
# the stem twice; the lowering's cell templates must still wire them apart.
_three_out = next(g for g in (spaces.get("nasnet").sample(_rng) for _ in range(500))
                  if len(g.normal.output_states()) == 3)
_amoeba, _nasnet = spaces.named_genome("amoebanet-a"), spaces.named_genome("nasnet-a")

# (label, genome, cells, filters, dataset, input size, every model parameter reaches the output)
CASES: list[tuple[str, Genome, int, int, str, int, bool]] = [
    ("amoebanet-a", _amoeba, 3, 4, "cifar10", 32, True),  # N = 3: the model scans cells 3..N
    ("nasnet-a imagenet stem", _nasnet, 1, 8, "imagenet", 64, True),
    # A sampled cell may leave an input state unused: its preprocessing conv is dead and dropped.
    *[(f"random nasnet {i}", g, 1, 5, "cifar10", 32, False) for i, g in enumerate(_random_nasnet[:1])],
    ("random nasnet, 3 outputs", _three_out, 3, 4, "cifar10", 32, False),
    ("nb201 best", spaces.parse_genome("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"), 2, 16, "cifar10", 32, True),
    ("nb201 mixed", spaces.parse_genome("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"), 2, 8, "cifar10", 32, True),
    # The conv into node 1 never reaches the output: the compiler (and both front ends) drop it.
    ("nb201 dead edges", spaces.parse_genome("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"), 2, 16, "cifar10", 32, False),
]


@pytest.mark.parametrize(("label", "genome", "cells", "filters", "dataset", "size", "all_live"), CASES,
                         ids=[c[0] for c in CASES])
def test_lowering_and_tracing_agree(label: str, genome: Genome, cells: int, filters: int, dataset: str,
                                    size: int, all_live: bool) -> None:
    model = build_model(genome, cells=cells, filters=filters, num_classes=10, dataset=dataset)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                               jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    traced = trace_module(model, (size, size, 3), variables=variables, train=False)
    lowered = lower_genome(genome, cells=cells, filters=filters, input_size=size, num_classes=10, dataset=dataset)
    model_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    # Every trainable parameter (BN scale/offset folded into its layer) is in the IR, but for dead layers'.
    assert lowered.total_params() == model_params if all_live else lowered.total_params() <= model_params
    assert traced.total_macs() == lowered.total_macs()
    assert traced.total_params() == lowered.total_params()
    assert [(x.kind, x.inputs, x.out_shape) for x in traced.layers] == [
        (x.kind, x.inputs, x.out_shape) for x in lowered.layers]
    for device in ("usb3", "usb2"):
        assert estimate(traced, device).latency_ms == pytest.approx(estimate(lowered, device).latency_ms, rel=0.01)
    # The space's memoized estimate (what the orchestrator prices children with) is the lowered graph's.
    space = spaces.get(genome.space)
    overrides = {"cells": cells, "filters": filters, "input_size": size, "num_classes": 10, "device": "usb2"}
    if "dataset" in space.network:
        overrides["dataset"] = dataset
    priced = space.estimate(genome, space.latency_settings(overrides))
    assert priced.latency_ms == pytest.approx(estimate(lowered, "usb2").latency_ms, rel=1e-9)


def test_the_model_and_the_simulator_share_one_op_table() -> None:
    assert tuple(NASNET_OP_LOWERING) == NASNET_OPS
    assert set(OPS) == set(NASNET_OPS)


# --- the EfficientNet-EdgeTPU block space: the same agreement, with its own network settings -----------------

_edgetpu = spaces.get("edgetpu")
_edgetpu_random = _edgetpu.sample(random.Random(7))
# (label, genome, network overrides, input size, classes)
EDGETPU_CASES: list[tuple[str, Genome, dict[str, float], int, int]] = [
    ("efficientnet-edgetpu-s at 224", spaces.named_genome("efficientnet-edgetpu-s"), {}, 224, 1000),
    # 32x32 CIFAR images: the stride-1 stem; a narrow, shallow proxy network.
    ("random edgetpu at 32, proxy width", _edgetpu_random, {"width": 0.25, "depth": 0.34}, 32, 10),
    # A compound-scaled genome (L's coefficients) times the network's own multipliers.
    ("efficientnet-edgetpu-l, narrow", spaces.named_genome("efficientnet-edgetpu-l"), {"width": 0.25}, 64, 10),
]


@pytest.mark.parametrize(("label", "genome", "network", "size", "classes"), EDGETPU_CASES,
                         ids=[c[0] for c in EDGETPU_CASES])
def test_edgetpu_lowering_and_tracing_agree(label: str, genome: Genome, network: dict[str, float], size: int,
                                            classes: int) -> None:
    model = build_model(genome, network, num_classes=classes, dataset="imagenet" if size >= 128 else "cifar10")
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                               jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    traced = trace_module(model, (size, size, 3), variables=variables, train=False)
    lowered = _edgetpu.graph(genome, input_size=size, num_classes=classes, **network)
    model_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    assert lowered.total_params() == traced.total_params() == model_params
    assert traced.total_macs() == lowered.total_macs()
    assert [(x.kind, x.inputs, x.out_shape, x.kernel, x.stride) for x in traced.layers] == [
        (x.kind, x.inputs, x.out_shape, x.kernel, x.stride) for x in lowered.layers]
    for device in ("usb3", "usb2"):
        assert estimate(traced, device).latency_ms == pytest.approx(estimate(lowered, device).latency_ms, rel=1e-9)
    priced = _edgetpu.estimate(genome, _edgetpu.latency_settings({"input_size": size, "num_classes": classes,
                                                                  **network}))
    assert priced.latency_ms == pytest.approx(estimate(lowered).latency_ms, rel=1e-9)
