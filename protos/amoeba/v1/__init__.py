"""amoeba.v1: the orchestrator's wire messages and service stubs (generated; see protos/generate.py)."""
