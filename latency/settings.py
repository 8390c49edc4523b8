"""The network and device an experiment's latency objective is estimated for, with per-space defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genome import Genome
from latency.estimate import LatencyReport, estimate_genome
from latency.hardware import PROFILES

#: The standard network of each space: NASNet's search child (N = 3, F = 24) and NAS-Bench-201's
#: skeleton (5 cells per stage, 16 channels), both on 32x32 CIFAR-10 images.
SPACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "nasnet": {"cells": 3, "filters": 24, "input_size": 32, "num_classes": 10},
    "nb201": {"cells": 5, "filters": 16, "input_size": 32, "num_classes": 10},
}
_KEYS = ("device", "clock_mhz", "cells", "filters", "input_size", "num_classes", "dataset")


class LatencySettingsError(ValueError):
    """The latency settings of an objective are malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class LatencySettings:
    """Estimate latency of the space's network at this size, on this device and clock."""

    cells: int
    filters: int
    input_size: int = 32
    num_classes: int = 10
    device: str = "usb3"
    clock_mhz: int | None = None
    dataset: str | None = None

    def estimate(self, genome: Genome) -> LatencyReport:
        return estimate_genome(
            genome, cells=self.cells, filters=self.filters, input_size=self.input_size,
            num_classes=self.num_classes, device=self.device, clock_mhz=self.clock_mhz, dataset=self.dataset,
            layers=False,
        )


def _positive_int(key: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise LatencySettingsError(f"latency {key} must be an integer between 1 and {high}, got {value!r}")
    return value


def resolve_settings(space: str, overrides: Mapping[str, Any] | None = None) -> LatencySettings:
    """The space's defaults updated by ``overrides`` (an objective's ``latency`` mapping), validated."""
    if space not in SPACE_DEFAULTS:
        raise LatencySettingsError(f"no latency defaults for space {space!r}")
    values: dict[str, Any] = dict(SPACE_DEFAULTS[space])
    for key, value in (overrides or {}).items():
        if key not in _KEYS:
            raise LatencySettingsError(f"unknown latency setting {key!r}; expected one of {', '.join(_KEYS)}")
        values[key] = value
    device = values.get("device", "usb3")
    if device not in PROFILES:
        raise LatencySettingsError(f"latency device must be one of {', '.join(PROFILES)}, got {device!r}")
    clock = values.get("clock_mhz")
    if clock is not None and clock not in (250, 500):
        raise LatencySettingsError(f"latency clock_mhz must be 250 or 500, got {clock!r}")
    dataset = values.get("dataset")
    if dataset is not None and dataset not in ("cifar10", "imagenet"):
        raise LatencySettingsError(f"latency dataset must be cifar10 or imagenet, got {dataset!r}")
    return LatencySettings(
        cells=_positive_int("cells", values["cells"], 64),
        filters=_positive_int("filters", values["filters"], 4096),
        input_size=_positive_int("input_size", values["input_size"], 4096),
        num_classes=_positive_int("num_classes", values["num_classes"], 100_000),
        device=device,
        clock_mhz=clock,
        dataset=dataset,
    )


def latency_of(genome: Genome, settings: LatencySettings) -> tuple[float, bool]:
    """(latency in ms, fits on chip) of a genome; a finite, non-negative latency or LatencySettingsError."""
    report = settings.estimate(genome)
    if not math.isfinite(report.latency_ms) or report.latency_ms < 0:
        raise LatencySettingsError(f"latency estimate for {genome.fingerprint} is not finite")
    return report.latency_ms, report.fits_on_chip
