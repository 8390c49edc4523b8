"""The NASNet/AmoebaNet cell space as a registry entry (Zoph et al. 2018; Real et al. 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genome.nasnet import NASNetGenome, NASNetSpace
from genome.reference import REFERENCE_CELLS, reference_genome
from latency.estimate import LatencyReport
from latency.ir import Graph
from latency.nasnet import STEMS, estimate_totals, lower_nasnet
from mutations.nasnet import NASNET_MUTATIONS, nasnet_default_spec
from spaces.base import Space


def _stem(network: Mapping[str, Any]) -> Any:
    dataset = network.get("dataset")
    return STEMS.get(dataset, dataset)


def _lower(genome: NASNetGenome, network: Mapping[str, Any]) -> Graph:
    return lower_nasnet(genome, cells=network["cells"], filters=network["filters"], input_size=network["input_size"],
                        num_classes=network["num_classes"], stem=_stem(network))


def _fast(genome: NASNetGenome, network: Mapping[str, Any], device: str, clock_mhz: int | None) -> LatencyReport | None:
    return estimate_totals(genome, network["cells"], network["filters"], network["input_size"], network["num_classes"],
                           device, clock_mhz, network.get("dataset"))


def _named(name: str) -> Any:
    return lambda: reference_genome(name)


NASNET = Space(
    name="nasnet",
    description="NASNet/AmoebaNet cells: a normal and a reduction cell of 5 pairwise combinations over 8 ops",
    codec=NASNetSpace(),
    mutations=NASNET_MUTATIONS,
    default_mutation=nasnet_default_spec(),
    # The paper's search child (N = 3 cells per stack, F = 24) on 32x32 CIFAR-10 images.
    network={"cells": 3, "filters": 24, "input_size": 32, "num_classes": 10, "dataset": None},
    lower=_lower,
    fast_estimate=_fast,
    named={name: _named(name) for name in REFERENCE_CELLS},
    model="nets.nasnet:build",
    configs={"train": "tiny"},
    # Final training as the paper trained AmoebaNet-A on CIFAR-10 (N = 6, F = 36, 600 epochs).
    final_preset="amoebanet-final",
)
