"""One router per resource group; ``service.api.app`` includes them all."""

from service.api.routes import (
    audit,
    boards,
    commands,
    devices,
    fhir,
    health,
    installed_base,
    kpis,
    reports,
    telemetry,
    tickets,
    traceability,
)

ROUTERS = (
    health.router,
    devices.router,
    installed_base.router,
    telemetry.router,
    tickets.router,
    kpis.router,
    reports.router,
    audit.router,
    traceability.router,
    fhir.router,
    boards.router,
    commands.router,
)

__all__ = ["ROUTERS"]
