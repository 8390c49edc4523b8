"""The ``amoeba`` command: the composition root that wires the orchestrator, workers and tools."""
