"""The wire protocol (amoeba.v1): .proto sources, committed generated code, and the one codec."""
