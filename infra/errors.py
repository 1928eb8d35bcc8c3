"""The two ways a message can fail, which decide its fate in the consume loop."""

from __future__ import annotations


class InfrastructureUnavailable(Exception):
    """A broker or database cannot be reached right now; the same work may succeed later.

    The consume loop holds the message unacknowledged and retries it with back-off. Raise it
    (or a subclass) only for outages, never for bad data: bad data retried forever is a crash
    loop by another name.
    """


class StorageUnavailable(InfrastructureUnavailable):
    """The database cannot be reached right now; the same call may succeed later.

    Raised instead of the driver's error for lost connections, a server that is down or
    restarting, and (SQLite) a write lock not obtained within the busy timeout. Any other
    exception from a store is a bug or bad data, and retrying it will not help.
    """


class Poison(Exception):
    """This message will never succeed: dead-letter it with ``str(exc)`` as the reason."""
