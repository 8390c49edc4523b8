"""Search spaces and genomes: frozen values with canonical JSON and stable fingerprints."""

from genome.base import Genome, GenomeError, SearchSpace, canonical_json, fingerprint_of
from genome.nasnet import NASNET_OPS, Cell, Combination, NASNetGenome, NASNetSpace
from genome.nb201 import NB201_OPS, NB201Genome, NB201Space
from genome.registry import get_space, load_named_genome, named_genomes, parse_genome

__all__ = [
    "NASNET_OPS",
    "NB201_OPS",
    "Cell",
    "Combination",
    "Genome",
    "GenomeError",
    "NASNetGenome",
    "NASNetSpace",
    "NB201Genome",
    "NB201Space",
    "SearchSpace",
    "canonical_json",
    "fingerprint_of",
    "get_space",
    "load_named_genome",
    "named_genomes",
    "parse_genome",
]
