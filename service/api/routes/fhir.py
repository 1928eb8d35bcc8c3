"""A read-only FHIR R4 facade at /fhir: metadata, Observation search, Device and Patient read.

Callers see what the rest of the API lets them see (``service.api.scope``). Every error is an
OperationOutcome with a 4xx (503 while storage is down), never the API's plain JSON errors:
the route class below turns them, authentication's 401 and 429 included.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from contract import KIND_METRICS
from infra.errors import InfrastructureUnavailable
from infra.time_us import us_from_datetime
from service.api.context import NoReadingStore
from service.api.deps import CallerDep, NowDep, ReadingsDep, StoreDep
from service.api.schemas import Principal, Role
from service.api.scope import not_found, scope_of, sees_device, sees_everything
from service.fhir import mapping, search
from service.fhir.bundles import operation_outcome, searchset
from service.fhir.ids import FHIR_ID, fhir_id
from service.model import Device, Patient
from service.store import ServiceStore
from service.store.queries import DeviceQuery

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = frozenset({"json", "application/json", FHIR_JSON, f"{FHIR_JSON};fhir-version=4.0"})
SEARCH_PARAMS = ("subject", "code", "date", "_count", "_format")
_ISSUE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported"}


class FhirResponse(JSONResponse):
    """JSON as ``application/fhir+json``."""

    media_type = FHIR_JSON


def outcome(status: int, diagnostics: str, headers: dict[str, str] | None = None) -> Response:
    """An OperationOutcome response."""
    code = _ISSUE.get(status, "throttled" if status == 429 else "transient")
    return FhirResponse(operation_outcome(code, diagnostics), status, headers=headers)


class FhirRoute(APIRoute):
    """Answers every error of its route as an OperationOutcome."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, with errors turned into OperationOutcomes."""
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
                )
                return outcome(400, problems.encode("ascii", "backslashreplace").decode())
            except search.SearchError as exc:
                return outcome(400, str(exc).encode("ascii", "backslashreplace").decode())
            except HTTPException as exc:
                return outcome(exc.status_code, str(exc.detail), dict(exc.headers or {}))
            except NoReadingStore:
                return outcome(503, "no reading store configured")
            except InfrastructureUnavailable:
                return outcome(503, "storage is unavailable for now; retry later")

        return handler


router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute)


def _format(request: Request) -> None:
    """400 unless ``_format`` (if given) asks for JSON."""
    wanted = request.query_params.get("_format")
    if wanted is not None and wanted.replace(" ", "") not in JSON_FORMATS:
        raise search.SearchError("only JSON is served (_format=json)")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _software() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "unknown"


@router.get("/metadata", response_class=FhirResponse)
def metadata(request: Request) -> dict[str, Any]:
    """The CapabilityStatement: what this facade serves (no token needed)."""
    _format(request)
    observation_params = [
        {"name": "subject", "type": "reference"},
        {"name": "code", "type": "token"},
        {"name": "date", "type": "date"},
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "vigil", "version": _software()},
        "implementation": {"description": "vigil read-only FHIR facade", "url": _base(request)},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {"description": "Bearer tokens (vigil tokens add)"},
                "resource": [
                    {
                        "type": "Observation",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": observation_params,
                    },
                    {"type": "Device", "interaction": [{"code": "read"}]},
                    {"type": "Patient", "interaction": [{"code": "read"}]},
                ],
            }
        ],
    }


def _by_fhir_id(store: ServiceStore, who: Principal, wanted: str) -> Device:
    """The visible device with a hashed FHIR id: a scan of ids only (no documents parsed)."""
    ids = store.device_ids(DeviceQuery(scope=scope_of(who), limit=None))
    found = next((i for i in ids if fhir_id(i) == wanted), None)
    device = None if found is None else store.device(found)
    if device is None:
        raise not_found()
    return device


def device_for(store: ServiceStore, who: Principal, wanted: str) -> Device:
    """The device whose FHIR id is ``wanted``, or 404 (missing or out of scope alike)."""
    if not FHIR_ID.match(wanted):
        raise not_found()
    direct = store.device(wanted)
    if direct is not None and fhir_id(direct.id) == wanted:
        if not sees_device(who, direct):
            raise not_found()
        return direct
    return _by_fhir_id(store, who, wanted)


def _sees_patient(who: Principal, patient: Patient) -> bool:
    if sees_everything(who):
        return True
    if who.role is Role.HOSPITAL:
        return patient.site_id == who.subject
    return who.role is Role.PATIENT and patient.id == who.subject


def patient_for(store: ServiceStore, who: Principal, wanted: str) -> Patient:
    """The patient whose FHIR id is ``wanted``, or 404 (missing or out of scope alike)."""
    if not FHIR_ID.match(wanted):
        raise not_found()
    patient = store.patient(wanted)
    if patient is None or fhir_id(patient.id) != wanted:
        rows = store.device_rows(DeviceQuery(scope=scope_of(who), limit=None))
        ids = {r.patient for r in rows if r.patient}
        patient = next((store.patient(i) for i in ids if fhir_id(i) == wanted), None)
    if patient is None or not _sees_patient(who, patient):
        raise not_found()
    return patient


@router.get("/Device/{resource_id}", response_class=FhirResponse)
def read_device(
    request: Request, who: CallerDep, store: StoreDep, resource_id: str
) -> dict[str, Any]:
    """One Device, with its UDI."""
    _format(request)
    device = device_for(store, who, resource_id)
    site = store.site(device.site_id)
    return mapping.device_resource(device, udi=store.udi(device.id), site=site)


@router.get("/Patient/{resource_id}", response_class=FhirResponse)
def read_patient(
    request: Request, who: CallerDep, store: StoreDep, resource_id: str
) -> dict[str, Any]:
    """One pseudonymous Patient."""
    _format(request)
    patient = patient_for(store, who, resource_id)
    return mapping.patient_resource(patient, site=store.site(patient.site_id))


def _subject_devices(store: ServiceStore, who: Principal, subject: str) -> list[Device]:
    """The devices whose readings have ``subject`` as their Observation subject."""
    kind, wanted = search.subject_reference(subject)
    if kind == "Device":
        device = device_for(store, who, wanted)
        return [] if device.patient else [device]
    patient = patient_for(store, who, wanted)
    mine = DeviceQuery(scope=scope_of(who), patient=patient.id, limit=None)
    return store.device_page(mine)


def _one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise search.SearchError(f"{name} may be given once")
    return values[0] if values else None


@router.get("/Observation", response_class=FhirResponse)
def search_observations(
    request: Request, who: CallerDep, store: StoreDep, readings: ReadingsDep, now: NowDep
) -> dict[str, Any]:
    """Observations of one subject: ``subject``, ``code``, ``date`` (ge/gt/le/lt/eq), paged."""
    _format(request)
    subject = _one(request, "subject")
    if subject is None:
        raise search.SearchError("subject is required (Patient/<id> or Device/<id>)")
    params = request.query_params
    metrics = search.metrics_of(params.getlist("code"))
    window = search.window_of(params.getlist("date"), us_from_datetime(now))
    count = search.count_of(_one(request, "_count"))
    after = search.cursor_of(_one(request, "_cursor"))
    devices = {d.id: d for d in _subject_devices(store, who, subject)}
    series = [
        (d.id, m)
        for d in devices.values()
        for m in sorted(KIND_METRICS[d.kind])
        if metrics is None or m in metrics
    ]
    if series and not readings.available:
        raise NoReadingStore("no reading store configured")
    found, next_key = search.page(readings, series, window, after, count)
    resources = [mapping.observation(r, device=devices[r.device_id]) for r in found]
    kept = [(k, v) for k, v in params.multi_items() if k in SEARCH_PARAMS]
    base = _base(request)
    here = [*kept, ("_cursor", search.cursor_text(after))] if after else kept
    self_url = f"{base}/Observation?{urlencode(here)}"
    next_url = None
    if next_key is not None:
        later = [*kept, ("_cursor", search.cursor_text(next_key))]
        next_url = f"{base}/Observation?{urlencode(later)}"
    return searchset(resources, base, self_url, next_url)


# Not in the OpenAPI document: a catch-all is no operation a client should call, and one route
# over five methods would give five operations the same id.
@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
def unsupported(request: Request, rest: str) -> Response:
    """404 for what this facade does not serve, 405 for any write (it is read-only)."""
    if request.method != "GET":
        return outcome(405, "this FHIR facade is read-only")
    return outcome(404, "not found: this facade serves metadata, Observation, Device, Patient")
