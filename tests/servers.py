"""The private Mosquitto and PostgreSQL the tests start (shared with bench/), and their marker.

The starters live in ``testing_services`` so benchmarks can use them without importing tests/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from testing_services import PG_BIN, PrivateMosquitto, PrivatePostgres, free_port, wait_for_port

__all__ = [
    "PG_BIN",
    "PrivateMosquitto",
    "PrivatePostgres",
    "free_port",
    "starts_server",
    "wait_for_port",
]

F = TypeVar("F", bound=Callable[..., object])

# The attribute tests/conftest.py looks for on fixture functions to mark their tests `services`.
STARTS_SERVER = "vigil_starts_server"


def starts_server(fixture_function: F) -> F:
    """Declare that a fixture starts a server (put it under ``@pytest.fixture``).

    Every test using the fixture, directly or through other fixtures, is marked ``services``
    and left out of ``make test-fast``.
    """
    setattr(fixture_function, STARTS_SERVER, True)
    return fixture_function
