"""Optimistic concurrency for ticket changes."""

from __future__ import annotations


class ConcurrentUpdate(Exception):
    """Another writer changed the record since it was read; re-read and retry, or report 409."""
