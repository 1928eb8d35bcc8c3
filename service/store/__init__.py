"""Persistence of the service desk: the ``ServiceStore`` protocol and its two implementations.

``SqliteStore`` (one file, or memory) and ``PostgresStore`` (psycopg 3, jsonb documents) pass the
same contract suite; ``open_service_store`` picks one from a URL read by ``infra.urls``.
"""

from __future__ import annotations

from pathlib import Path

from infra.urls import parse_store_url
from service.sla import SlaConfig
from service.store.postgres import PostgresStore
from service.store.protocol import ServiceStore
from service.store.sqlite import SqliteStore

__all__ = ["PostgresStore", "ServiceStore", "SqliteStore", "open_service_store"]


def open_service_store(url: str, *, sla: SlaConfig | None = None) -> ServiceStore:
    """Open (and migrate) the store ``url`` names: ``sqlite:///path``, ``postgresql://…``, a DSN.

    ``sla`` is the policy the tickets' clock columns are computed with (the default one when
    not given: pass the configured one wherever tickets are written).
    """
    scheme, target = parse_store_url(url)
    if scheme == "sqlite":
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(target, sla=sla)
    return PostgresStore(target, sla=sla)
