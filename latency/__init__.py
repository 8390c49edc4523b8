"""Simulated Coral Edge TPU latency: a layer IR, genome lowering and a calibrated hardware model."""

from latency.estimate import LatencyError, LatencyReport, LayerCost, clear_cache, estimate, estimate_genome
from latency.hardware import PROFILES, DeviceProfile
from latency.ir import Graph, GraphBuilder, IRError, Layer
from latency.lower import NASNET_OP_LOWERING, LoweringError, lower_genome, lower_nasnet, lower_nb201

__all__ = [
    "NASNET_OP_LOWERING",
    "PROFILES",
    "DeviceProfile",
    "Graph",
    "GraphBuilder",
    "IRError",
    "LatencyError",
    "LatencyReport",
    "Layer",
    "LayerCost",
    "LoweringError",
    "clear_cache",
    "estimate",
    "estimate_genome",
    "lower_genome",
    "lower_nasnet",
    "lower_nb201",
]
