"""Tabular benchmark data shipped with Amoeba (NAS-Bench-201 CIFAR-10) and its loader."""
