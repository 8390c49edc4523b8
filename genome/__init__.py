"""Genomes as frozen values with canonical JSON and stable fingerprints; one module per search space."""

from genome.base import Decision, Genome, GenomeError, SearchSpace, canonical_json, fingerprint_of
from genome.nasnet import NASNET_OPS, Cell, Combination, NASNetGenome, NASNetSpace
from genome.nb201 import NB201_OPS, NB201Genome, NB201Space

__all__ = [
    "NASNET_OPS",
    "NB201_OPS",
    "Cell",
    "Combination",
    "Decision",
    "Genome",
    "GenomeError",
    "NASNetGenome",
    "NASNetSpace",
    "NB201Genome",
    "NB201Space",
    "SearchSpace",
    "canonical_json",
    "fingerprint_of",
]
