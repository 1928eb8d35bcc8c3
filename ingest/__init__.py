"""vigil ingest."""
