"""Versioned protobuf packages of the wire protocol."""
