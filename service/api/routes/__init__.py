"""One router per resource group; ``service.api.app`` includes them all."""

from service.api.routes import (
    audit,
    boards,
    commands,
    devices,
    fhir,
    health,
    installed_base,
    knowledge,
    kpis,
    parts,
    patients,
    reports,
    telemetry,
    tickets,
    tickets_reopen,
    traceability,
    vigilance,
)

ROUTERS = (
    health.router,
    devices.router,
    installed_base.router,
    telemetry.router,
    tickets.router,
    tickets_reopen.router,
    kpis.router,
    knowledge.router,
    parts.router,
    patients.router,
    reports.router,
    audit.router,
    traceability.router,
    fhir.router,
    boards.router,
    vigilance.router,
    commands.router,
)

__all__ = ["ROUTERS"]
