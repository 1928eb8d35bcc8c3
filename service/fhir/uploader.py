"""Push readings to a FHIR server as transaction Bundles, through the outbox, exactly once.

Each pass reads the readings stored since the cursor (looking back ``lookback_s`` for readings
that arrived late), writes their Observations to the outbox, and posts what is due in
transaction Bundles. Every entry is a conditional create on its identifier (``ifNoneExist``):
a bundle the server committed but whose answer was lost creates nothing when it is posted
again. A server that is down, slow or overloaded (transport error, 5xx, 408, 429) leaves the
items pending with a growing delay; one that refuses a bundle (another 4xx) gets it again in
halves, until the one Observation it refuses is kept as ``failed`` with the server's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from infra.errors import StorageUnavailable
from infra.telemetry.base import ReadingStore
from service.fhir import codes, mapping
from service.fhir.auth import Auth, AuthFailed
from service.fhir.bundles import Conditional, transaction
from service.fhir.ids import reading_identifier
from service.fhir.outbox import FhirOutbox, Item
from service.fhir.validate import FhirInvalid, validate
from service.model import Device
from service.store import ServiceStore

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class UploadSettings:
    """Where to upload, what, and how patiently."""

    base_url: str
    gateway_id: str
    software: str = "0"
    site_ids: frozenset[str] = frozenset()  # empty: every site
    bundle_size: int = 100
    page: int = 5000
    lookback_s: float = 3600.0
    backoff_s: float = 5.0
    backoff_cap_s: float = 300.0
    keep_done_s: float = 7 * 86_400.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones."""
        return float(min(self.backoff_cap_s, self.backoff_s * 2 ** max(attempts - 1, 0)))


@dataclass
class PassReport:
    """What one pass did."""

    enqueued: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    bundles: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Answer:
    """How the server took one bundle: ``ok``, ``retry`` (later) or ``refused`` (4xx)."""

    verdict: str
    error: str = ""


class Uploader:
    """Moves readings into the outbox and the outbox onto the FHIR server."""

    def __init__(
        self,
        settings: UploadSettings,
        readings: ReadingStore,
        store: ServiceStore,
        outbox: FhirOutbox,
        auth: Auth,
        client: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.readings = readings
        self.store = store
        self.outbox = outbox
        self.auth = auth
        self.client = client
        self.clock = clock
        self._devices: dict[str, Device | None] = {}

    def _device(self, device_id: str) -> Device | None:
        if device_id not in self._devices:
            self._devices[device_id] = self.store.device(device_id)
        return self._devices[device_id]

    def _wanted(self, device: Device | None) -> bool:
        sites = self.settings.site_ids
        return device is not None and (not sites or device.site_id in sites)

    def _items(self, page: Sequence[Any]) -> tuple[list[Item], list[tuple[str, str]]]:
        """Outbox items of the readings of ``page`` not in the outbox yet, and any invalid."""
        keys = [reading_identifier(r) for r in page]
        known = self.outbox.known(keys)
        items, invalid = [], []
        for reading, key in zip(page, keys, strict=True):
            device = self._device(reading.device_id)
            if key in known or not self._wanted(device):
                continue
            resource = mapping.observation(
                reading, device=device, gateway_id=self.settings.gateway_id
            )
            try:
                validate(resource)
            except FhirInvalid as exc:  # kept as failed with the reason, never dropped
                invalid.append((key, str(exc)))
            items.append(Item(key, reading.device_id, reading.ts_us, resource))
        return items, invalid

    def enqueue(self) -> int:
        """Write the Observations of readings not seen yet to the outbox; how many."""
        self._devices.clear()
        now = self.clock()
        until_us = int(now * 1_000_000) + 1
        cursor = self.outbox.cursor()
        since = 0 if cursor is None else max(0, cursor - int(self.settings.lookback_s * 1e6))
        added, limit = 0, self.settings.page
        while True:
            page = self.readings.fetch_readings(since_us=since, until_us=until_us, limit=limit)
            if not page:
                return added
            items, invalid = self._items(page)
            last = page[-1].ts_us
            added += self.outbox.enqueue(items, last, now)
            if invalid:
                self.outbox.settle(failed=invalid)
            if len(page) < limit:
                return added
            if last == since:  # a whole page of one instant: step past it rather than loop
                log.warning("more than %d readings at %d; some may be skipped", limit, last)
            since = max(last, since + 1)

    def _bundle(self, items: Sequence[Item]) -> dict[str, Any]:
        """The transaction Bundle of ``items``, with the Devices, Patients and PHG they cite."""
        gateway = self.settings.gateway_id
        entries = [
            Conditional(
                mapping.gateway_resource(gateway, self.settings.software),
                codes.VIGIL_GATEWAY,
                gateway,
            )
        ]
        for device_id in sorted({i.device_id for i in items}):
            device = self._device(device_id)
            if device is None:
                continue
            site = self.store.site(device.site_id)
            resource = mapping.device_resource(device, udi=self.store.udi(device.id), site=site)
            entries.append(Conditional(resource, codes.VIGIL_DEVICE, device.id))
            patient = self.store.patient(device.patient) if device.patient else None
            if patient is not None:
                entries.append(
                    Conditional(
                        mapping.patient_resource(patient, site=site),
                        codes.VIGIL_PATIENT,
                        patient.id,
                    )
                )
        unique = {e.full_url: e for e in entries}  # one Patient however many of its devices
        observations = [Conditional(i.observation, codes.PHD_OBSERVATION_ID, i.key) for i in items]
        return transaction([*unique.values(), *observations])

    def _post(self, bundle: dict[str, Any]) -> httpx.Response:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON} | self.auth.headers()
        return self.client.post(self.settings.base_url, json=bundle, headers=headers)

    def _answer(self, items: Sequence[Item]) -> _Answer:
        """Post ``items`` once (twice if the token had expired) and judge the answer."""
        bundle = self._bundle(items)
        try:
            response = self._post(bundle)
            if response.status_code == 401:  # an expired token: renew once, at once
                self.auth.invalidate()
                response = self._post(bundle)
        except AuthFailed as exc:
            return _Answer("retry", str(exc))
        except httpx.HTTPError as exc:
            return _Answer("retry", f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            return _accepted(response, len(bundle["entry"]))
        if status >= 500 or status in RETRY_STATUSES or status in (401, 403):
            return _Answer("retry", f"HTTP {status}: {_diagnostics(response)}")
        return _Answer("refused", f"HTTP {status}: {_diagnostics(response)}")

    def _send(self, items: Sequence[Item], report: PassReport) -> None:
        answer = self._answer(items)
        report.bundles += 1
        keys = [i.key for i in items]
        if answer.verdict == "ok":
            self.outbox.settle(done=keys)
            report.sent += len(items)
        elif answer.verdict == "retry":
            now = self.clock()
            later = [
                (i.key, now + self.settings.delay(i.attempts + 1), answer.error) for i in items
            ]
            self.outbox.settle(retry=later)
            report.retried += len(items)
            report.errors.append(answer.error)
        elif len(items) == 1:
            log.warning("FHIR server refused %s: %s", keys[0], answer.error)
            self.outbox.settle(failed=[(keys[0], answer.error)])
            report.failed += 1
        else:  # find the entry it refuses: each half on its own
            half = len(items) // 2
            self._send(items[:half], report)
            self._send(items[half:], report)

    def send_due(self, max_bundles: int | None = None) -> PassReport:
        """Post due outbox items in bundles until none is due, or the server fails."""
        report = PassReport()
        self._devices.clear()
        while max_bundles is None or report.bundles < max_bundles:
            items = self.outbox.due(self.clock(), self.settings.bundle_size)
            if not items:
                break
            self._send(items, report)
            if report.retried:
                break  # the server is down or busy: leave the rest for a later pass
        return report

    def pass_once(self, max_bundles: int | None = None) -> PassReport:
        """One pass: enqueue new readings, post what is due, forget long-done items."""
        enqueued = self.enqueue()
        report = self.send_due(max_bundles)
        report.enqueued = enqueued
        cursor = self.outbox.cursor()
        if cursor is not None:
            keep_us = int((self.settings.keep_done_s + self.settings.lookback_s) * 1e6)
            self.outbox.prune(cursor - keep_us)
        return report

    async def run(self, poll_s: float) -> None:
        """Pass after pass, every ``poll_s`` seconds, until cancelled."""
        while True:
            try:
                report = await asyncio.to_thread(self.pass_once)
            except StorageUnavailable as exc:
                log.warning("FHIR upload: storage unavailable (%s); retrying", exc)
            except Exception:  # a bug must not end the worker: log it and go on
                log.exception("FHIR upload pass failed; retrying")
            else:
                if report.sent or report.failed or report.retried:
                    log.info(
                        "FHIR upload: %d sent, %d refused, %d held (%s)",
                        report.sent,
                        report.failed,
                        report.retried,
                        "; ".join(report.errors[:1]) or "ok",
                    )
            await asyncio.sleep(poll_s)


def _diagnostics(response: httpx.Response) -> str:
    """The server's reason: the first issue of an OperationOutcome, or the body's start."""
    try:
        body = response.json()
        issue = body["issue"][0]
        return str(issue.get("diagnostics") or issue.get("code"))[:500]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return response.text[:500]


def _accepted(response: httpx.Response, entries: int) -> _Answer:
    """``ok`` if a transaction-response shows every entry created or found."""
    try:
        body = response.json()
        statuses = [str(e["response"]["status"]) for e in body["entry"]]
    except (ValueError, KeyError, TypeError):
        return _Answer("retry", "the server's answer is no transaction-response Bundle")
    if len(statuses) != entries or not all(s[:1] == "2" for s in statuses):
        return _Answer("refused", f"entry statuses {sorted(set(statuses))}")
    return _Answer("ok")
