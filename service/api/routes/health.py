"""Liveness: answers without a token, touches no store."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    """The process is up."""
    return Health(status="ok")
