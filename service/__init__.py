"""vigil service."""
