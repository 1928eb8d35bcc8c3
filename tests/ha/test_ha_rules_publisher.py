"""A replica that takes the lease before its broker connection is up still publishes its alerts."""

from __future__ import annotations

from typing import Any, cast

from rules.replica import Replica

CLIENT = object()  # the consume loop's connection


class CatchingUpRuntime:
    """A runtime whose catch-up outlasts the consume loop's connect (as on a TLS broker)."""

    def __init__(self) -> None:
        self.active = False
        self.publisher: object | None = None
        self.replica: Replica | None = None

    async def take_over(self, *_: Any) -> None:
        assert self.replica is not None
        self.replica.on_client(cast(Any, CLIENT))  # connected meanwhile: still a standby
        self.active = True

    async def snapshot(self) -> None:
        return None


class Lease:
    name, holder = "rules", "vigil-rules-1"


class NoCheckpoints:
    def load(self) -> None:
        return None


async def test_a_connection_made_during_the_takeover_becomes_the_publisher() -> None:
    runtime = CatchingUpRuntime()
    replica = Replica(cast(Any, runtime), cast(Any, Lease()), cast(Any, NoCheckpoints()), list)
    runtime.replica = replica
    await replica._take_over()
    assert runtime.active and runtime.publisher is CLIENT
