"""The registry of search spaces: the built-in ones and those installed under the ``amoeba.spaces``
entry-point group, looked up by name."""

from __future__ import annotations

import json
import warnings
from importlib.metadata import entry_points
from typing import Any

from genome.base import Genome, GenomeError
from spaces.base import Space, SpaceError, load_object

ENTRY_POINT_GROUP = "amoeba.spaces"
#: The spaces Amoeba ships; a plug-in adds one by naming its Space in the entry-point group.
BUILTIN = ("spaces.nasnet:NASNET", "spaces.nb201:NB201", "spaces.edgetpu:EDGETPU", "spaces.lse:LSE")
#: The space ``amoeba up`` searches when nothing names one (the paper's).
DEFAULT_SPACE = "nasnet"

_spaces: dict[str, Space] = {}


def _load() -> dict[str, Space]:
    if _spaces:
        return _spaces
    found: dict[str, Space] = {}
    for reference in BUILTIN:
        space = load_object(reference)
        found[space.name] = space
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            space = ep.load()
        except Exception as exc:  # a broken plug-in must not take the built-in spaces down with it
            warnings.warn(f"search space plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if not isinstance(space, Space):
            warnings.warn(f"search space plug-in {ep.name!r} ({ep.value}) is not a spaces.Space", stacklevel=2)
            continue
        if space.name in found:
            if found[space.name] is not space:
                warnings.warn(f"search space plug-in {ep.value} reuses the name {space.name!r}; ignored", stacklevel=2)
            continue
        found[space.name] = space
    _spaces.update(found)
    return _spaces


def register(space: Space) -> None:
    """Add a space at run time (the entry-point group is the way for installed packages)."""
    spaces = _load()
    if space.name in spaces and spaces[space.name] is not space:
        raise SpaceError(f"a search space named {space.name!r} is registered already")
    spaces[space.name] = space


def names() -> tuple[str, ...]:
    return tuple(sorted(_load()))


def all_spaces() -> tuple[Space, ...]:
    return tuple(_load()[n] for n in names())


def get(name: Any) -> Space:
    """The space called ``name``; SpaceError naming the known ones otherwise."""
    space = _load().get(name) if isinstance(name, str) else None
    if space is None:
        shown = repr(name)[:60]
        raise SpaceError(f"unknown search space {shown}; expected one of {', '.join(names())}")
    return space


def parse_genome(data: Any, space: str | None = None) -> Genome:
    """Decode (and validate) a genome from JSON data, a JSON string, or a space's text form.

    Without ``space`` the genome's own ``"space"`` key names it; a bare text is tried against every space
    that has a text form (NAS-Bench-201 arch strings).
    """
    if space is not None:
        return get(space).parse(data)
    if isinstance(data, str):
        text = data.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise GenomeError(f"genome is not valid JSON: {exc.msg} at position {exc.pos}") from None
            except RecursionError:
                raise GenomeError("genome JSON is nested too deeply") from None
        else:
            for candidate in all_spaces():
                if candidate.text_form is None:
                    continue
                try:
                    return candidate.text_form(text)
                except GenomeError:
                    continue
            raise GenomeError(f"{text[:80]!r} is not a genome JSON object nor the text form of any space")
    if isinstance(data, dict) and isinstance(data.get("space"), str):
        return get(data["space"]).parse(data)
    raise GenomeError(f"genome JSON must name its 'space' (one of {', '.join(names())})")


def named_genomes() -> tuple[str, ...]:
    """Every reference genome name, across spaces."""
    return tuple(n for s in all_spaces() for n in s.named)


def named_genome(name: str) -> Genome:
    """A published genome by name (``amoebanet-a``, ``nasnet-a``, ...)."""
    for space in all_spaces():
        if name in space.named:
            return space.named[name]()
    raise GenomeError(f"unknown genome name {name[:60]!r}; expected one of {', '.join(named_genomes())}")
