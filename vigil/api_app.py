"""The REST API built from ``VigilSettings``: ``uvicorn --factory vigil.api_app:app``.

This is the composition root for the API: settings come from the one configuration path
(VIGIL_… environment variables, the TOML file, defaults); service/ never reads the environment.
"""

from __future__ import annotations

from fastapi import FastAPI

from service.api import ApiSettings, create_app
from vigil.settings import VigilSettings


def api_settings(vigil: VigilSettings) -> ApiSettings:
    """The API's settings from the [service] section."""
    s = vigil.service
    return ApiSettings(
        store_url=s.store_url,
        tokens_file=s.tokens_file,
        readings_url=s.readings_url,
        audit_key_file=s.audit_key_file,
        allowed_hosts=s.api_allowed_hosts,
        max_body_bytes=s.api_max_body_bytes,
        rate_limit=s.api_rate_limit,
        ticket_rate_limit=s.api_ticket_rate_limit,
        auth_failure_limit=s.api_auth_failure_limit,
    )


def app() -> FastAPI:
    """The app factory for uvicorn: the API as VigilSettings describe it."""
    vigil = VigilSettings()
    return create_app(api_settings(vigil), sla=vigil.sla_config())
