"""Simulated Coral Edge TPU latency: a layer IR, genome lowering and a calibrated hardware model."""
