"""Private service instances for tests and benchmarks (not part of the installed package)."""

from testing_services.servers import (
    PG_BIN,
    PrivateMosquitto,
    PrivatePostgres,
    free_port,
    wait_for_port,
)

__all__ = ["PG_BIN", "PrivateMosquitto", "PrivatePostgres", "free_port", "wait_for_port"]
