"""Workers: the lease/heartbeat/report loop with pluggable evaluators (table lookup, Flax training)."""
