"""The gRPC orchestrator: service use cases over the store, a thin servicer, and the server process."""
