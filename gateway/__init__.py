"""vigil gateway."""
