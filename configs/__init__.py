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


#: Config files are a few hundred bytes; anything this large is certainly not one (and is not read whole).
MAX_CONFIG_BYTES = 1024 * 1024
#: YAML aliases repeat a value without copying it; a handful of them nested can expand to gigabytes.
MAX_ALIASES = 100


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents with more than MAX_ALIASES aliases (a "billion laughs" bomb)."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise ConfigError(f"the config uses more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def parse_config(text: str, where: str = "config") -> Any:
    """The value of a YAML or JSON document (JSON is YAML); ConfigError for anything unreadable."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where} is not valid YAML/JSON{at}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply") from None


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """The mapping in a shipped config (``nb201-table``) or in a YAML/JSON file (JSON is YAML).

    Validation of the keys is ``orchestrator.config.parse_spec``'s job; this reads, and refuses files that
    are too large, not UTF-8 text, not a mapping, or YAML bombs, each with one line.
    """
    path = Path(name_or_path)
    if not path.exists() and (HERE / f"{name_or_path}.yaml").is_file():
        path = HERE / f"{name_or_path}.yaml"
    if not path.is_file():
        shown = str(name_or_path)[:200]
        raise ConfigError(f"no config file {shown!r} and no shipped config of that name "
                          f"(shipped: {', '.join(shipped())})")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is {size:,} bytes; a config file is at most {MAX_CONFIG_BYTES:,}")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text (a config is YAML or JSON)") from None
    data = parse_config(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data
