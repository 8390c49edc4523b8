"""The NAS-Bench-201 cell space as a registry entry (Dong & Yang 2020), with its tabular benchmark."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genome.nb201 import NB201Genome, NB201Space, parse_arch_str
from latency.estimate import LatencyReport
from latency.ir import Graph
from latency.nb201 import estimate_fast, lower_nb201
from mutations.nb201 import NB201_DEFAULT_SPEC, NB201_MUTATIONS
from spaces.base import Space


def _lower(genome: NB201Genome, network: Mapping[str, Any]) -> Graph:
    return lower_nb201(genome, input_size=network["input_size"], num_classes=network["num_classes"],
                       cells=network["cells"], filters=network["filters"])


def _fast(genome: NB201Genome, network: Mapping[str, Any], device: str, clock_mhz: int | None) -> LatencyReport | None:
    return estimate_fast(genome, input_size=network["input_size"], num_classes=network["num_classes"],
                         cells=network["cells"], filters=network["filters"], device=device, clock_mhz=clock_mhz)


NB201 = Space(
    name="nb201",
    description="NAS-Bench-201 cells: 4 nodes, 6 edges, 5 ops per edge (15,625 cells, tabulated)",
    codec=NB201Space(),
    mutations=NB201_MUTATIONS,
    default_mutation=NB201_DEFAULT_SPEC,
    # The benchmark's skeleton: 5 cells per stage, 16 channels in stage 1, 32x32 CIFAR-10 images.
    network={"cells": 5, "filters": 16, "input_size": 32, "num_classes": 10},
    lower=_lower,
    fast_estimate=_fast,
    model="nets.nb201:build",
    table="tables.nb201:NB201_BENCHMARK",
    text_form=parse_arch_str,
    configs={"train": "nb201-12ep", "table": "nb201-table"},
)
