"""Amoeba's Python face: a client for experiments and trials, and the Trial that evaluators receive."""
