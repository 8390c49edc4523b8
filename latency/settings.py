"""The device and the network an objective's latency is estimated for: the space's standard network,
updated by an experiment's overrides, validated without knowing the space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.errors import AmoebaError
from latency.hardware import CLOCKS_MHZ, PROFILES

DEVICE_KEYS = ("device", "clock_mhz")
#: Integers in network settings are sizes and counts: positive and below this.
MAX_SETTING = 1_000_000


class LatencySettingsError(AmoebaError, ValueError):
    """The latency settings of an objective are malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class LatencySettings:
    """Where (``device``, ``clock_mhz``) and for which network (the space's keys, sorted pairs) to estimate."""

    network: tuple[tuple[str, Any], ...]
    device: str = "usb3"
    clock_mhz: int | None = None

    def network_dict(self) -> dict[str, Any]:
        return dict(self.network)

    def to_json(self) -> dict[str, Any]:
        return {**self.network_dict(), "device": self.device, "clock_mhz": self.clock_mhz}


def resolve_settings(standard: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> LatencySettings:
    """``standard`` (a space's network) updated by ``overrides`` (an objective's ``latency`` mapping).

    Keys are the standard network's own plus ``device`` and ``clock_mhz``; a setting keeps the kind of
    its standard value (a positive integer, or a string/None choice the space's lowering checks).
    """
    values: dict[str, Any] = dict(standard)
    device, clock = "usb3", None
    for key, value in (overrides or {}).items():
        if key == "device":
            device = value
        elif key == "clock_mhz":
            clock = value
        elif key not in standard:
            known = ", ".join([*standard, *DEVICE_KEYS])
            raise LatencySettingsError(f"unknown latency setting {str(key)[:60]!r}; expected one of {known}")
        else:
            values[key] = _setting(key, value, standard[key])
    if device not in PROFILES:
        raise LatencySettingsError(f"latency device must be one of {', '.join(PROFILES)}, got {str(device)[:60]!r}")
    if clock is not None and (isinstance(clock, bool) or clock not in CLOCKS_MHZ):
        raise LatencySettingsError(f"latency clock_mhz must be one of {', '.join(map(str, CLOCKS_MHZ))}, got {clock!r}")
    return LatencySettings(tuple(sorted(values.items())), device, clock)


def _setting(key: str, value: Any, standard: Any) -> Any:
    if isinstance(standard, bool) or isinstance(value, bool):
        raise LatencySettingsError(f"latency {key} cannot be a boolean")
    if isinstance(standard, int):
        if not isinstance(value, int) or not 1 <= value <= MAX_SETTING:
            raise LatencySettingsError(f"latency {key} must be an integer between 1 and {MAX_SETTING}, got {value!r}")
        return value
    if isinstance(standard, float):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise LatencySettingsError(f"latency {key} must be a positive number, got {value!r}")
        return float(value)
    if value is not None and not isinstance(value, str):
        raise LatencySettingsError(f"latency {key} must be a string or null, got {value!r}")
    return value
