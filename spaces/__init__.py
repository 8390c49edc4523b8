"""Search spaces as plug-ins: each ``Space`` binds a genome codec, mutations, network, latency and model."""

from spaces.base import Space, SpaceError, clear_cache, load_object
from spaces.registry import (
    DEFAULT_SPACE,
    ENTRY_POINT_GROUP,
    all_spaces,
    get,
    named_genome,
    named_genomes,
    names,
    parse_genome,
    register,
)

__all__ = [
    "DEFAULT_SPACE",
    "ENTRY_POINT_GROUP",
    "Space",
    "SpaceError",
    "all_spaces",
    "clear_cache",
    "get",
    "load_object",
    "named_genome",
    "named_genomes",
    "names",
    "parse_genome",
    "register",
]
