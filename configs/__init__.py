"""Shipped experiment configs (YAML) and ``load_config``, which reads a shipped name or a file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from domain.errors import AmoebaError

HERE = Path(__file__).parent


class ConfigError(AmoebaError, ValueError):
    """A config cannot be found or read; the message is one line for the user."""


def shipped() -> tuple[str, ...]:
    """Names of the configs that ship with Amoeba (file stems under configs/)."""
    return tuple(sorted(p.stem for p in HERE.glob("*.yaml")))


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """The mapping in a shipped config (``nb201-table``) or in a YAML/JSON file (JSON is YAML).

    Validation of the keys is ``orchestrator.config.parse_spec``'s job; this only reads.
    """
    path = Path(name_or_path)
    if not path.exists() and (HERE / f"{name_or_path}.yaml").is_file():
        path = HERE / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"no config file {str(name_or_path)!r} and no shipped config of that name "
                          f"(shipped: {', '.join(shipped())})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML/JSON{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data
