"""vigil vigil."""
