"""Tabular benchmarks: precomputed results of every genome of a space, with their search protocol."""
