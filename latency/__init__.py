"""Simulated Coral Edge TPU latency: a layer IR, the spaces' lowerings and a calibrated hardware model."""

from latency.builder import LoweringError
from latency.estimate import LatencyError, LatencyReport, LayerCost, estimate
from latency.hardware import PROFILES, DeviceProfile
from latency.ir import Graph, GraphBuilder, IRError, Layer
from latency.settings import LatencySettings, LatencySettingsError, resolve_settings

__all__ = [
    "PROFILES",
    "DeviceProfile",
    "Graph",
    "GraphBuilder",
    "IRError",
    "LatencyError",
    "LatencyReport",
    "LatencySettings",
    "LatencySettingsError",
    "Layer",
    "LayerCost",
    "LoweringError",
    "estimate",
    "resolve_settings",
]
