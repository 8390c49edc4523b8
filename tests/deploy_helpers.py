"""The deployment files as their tools read them (not a test module: it holds no tests): docker-compose.yml
with Compose's variable interpolation and override merge, and deploy/healthcheck.py loaded as a module."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
CUDA_OVERRIDE = ROOT / "deploy" / "docker-compose.cuda.yml"
IMAGE_ROOT = "/app/"  # WORKDIR of both Dockerfiles: the repository's files live here in the images
ENV = {"AMOEBA_TOKEN": "s3cret"}  # what a user must set; everything else takes its default

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class InterpolationError(Exception):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution: ${V}, ${V:-default}, ${V-default}, ${V:?error}, ${V?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if unset else str(current)
        if op in (":?", "?"):
            if unset:
                raise InterpolationError(f"{name}: {arg}")
            return str(current)
        return "" if current is None else current

    return _VAR.sub(sub, value)


def _volume_target(v: Any) -> str:
    return v.split(":")[1] if isinstance(v, str) else v["target"]


def merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of an override file: mappings merge, volumes merge by target, other values replace."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if key == "volumes" and isinstance(base, list) and isinstance(over, list):
        targets = {_volume_target(v) for v in over}
        return [v for v in base if _volume_target(v) not in targets] + over
    return over


def load(*files: Path, env: Mapping[str, str] = ENV) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for f in files:
        doc = merge(doc, yaml.safe_load(f.read_text()))
    # Extension fields (x-*) are YAML anchors only; Compose ignores them.
    return interpolate({k: v for k, v in doc.items() if not k.startswith("x-")}, env)


def as_list(command: Any) -> list[str]:
    assert isinstance(command, list), "use the exec (list) form so no shell reinterprets the arguments"
    return [str(c) for c in command]


def load_healthcheck(name: str = "deploy_healthcheck") -> ModuleType:
    """deploy/healthcheck.py (a script, not a package module) imported under ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
