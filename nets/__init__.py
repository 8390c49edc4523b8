"""Flax networks: the NASNet and NAS-Bench-201 models of a genome, and a zoo of reference networks."""
