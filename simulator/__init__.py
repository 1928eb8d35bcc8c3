"""vigil simulator."""
