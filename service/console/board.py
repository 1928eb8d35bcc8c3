"""The ward board's rows: one page of a site's (or ward's) patches with their live status.

Reuses the API's board queries: ``device_rows`` (a keyset page, scoped and filtered in SQL),
the reading store's ``latest_by_device``, ``active_alerts`` and ``baselines`` for exactly those
devices, and the acknowledgements of those alerts. Nothing reads more than the page it shows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contract import AlertEvent, DeviceKind, Reading, Severity, WoundBaseline
from infra.time_us import datetime_from_us, us_from_datetime
from service.api.context import Telemetry
from service.console.acks import Ack, AckBook, alert_id
from service.store import ServiceStore
from service.store.queries import DeviceQuery, DeviceRow, Scope

PAGE = 100
LATEST_WINDOW = timedelta(days=7)
SILENT_AFTER = timedelta(hours=1)  # a patch not heard from for this long is "silent"
LOW_BATTERY = 20.0
MAX_PLOT_POINTS = 2000  # evidence windows are short; this bounds a hostile one
DELTA_METRIC = "wound_temp"  # the Δ column: wound temperature over the wound's own baseline


@dataclass(frozen=True, slots=True)
class AlertView:
    """An active alert as the board shows it: the event, its acknowledgement, its plot."""

    event: AlertEvent
    ack: Ack | None
    plot: dict[str, Any] | None

    @property
    def key(self) -> str:
        """A stable DOM id for this alert."""
        device, rule, at = alert_id(self.event)
        return f"a-{device}-{rule}-{at}".replace(".", "_")


@dataclass(frozen=True, slots=True)
class PatchStatus:
    """One board row."""

    device: DeviceRow
    latest: dict[str, Reading]
    alerts: list[AlertView] = field(default_factory=list)
    delta: float | None = None  # wound temperature over the wound's own baseline (°C)
    baseline: float | None = None  # that baseline (°C), when the rules have published it
    last_seen: datetime | None = None
    state: str = "nodata"  # critical, warning, acknowledged, silent, ok, nodata

    def value(self, metric: str) -> float | None:
        """The latest value of ``metric``, or None."""
        reading = self.latest.get(metric)
        return None if reading is None else reading.value


@dataclass(frozen=True, slots=True)
class BoardPage:
    """A page of rows and where the next page starts (None: last page)."""

    rows: list[PatchStatus]
    next_after: str | None


def board_page(
    store: ServiceStore,
    telemetry: Telemetry,
    acks: AckBook,
    query: DeviceQuery,
    now: datetime,
) -> BoardPage:
    """The page of rows ``query`` selects (its ``limit`` is the page size)."""
    limit = query.limit or PAGE
    devices = store.device_rows(_one_more(query, limit))
    more = len(devices) > limit
    devices = devices[:limit]
    ids = [d.id for d in devices]
    latest: dict[str, dict[str, Reading]] = defaultdict(dict)
    for r in telemetry.latest(ids, us_from_datetime(now - LATEST_WINDOW)):
        latest[r.device_id][r.metric] = r
    alerts: dict[str, list[AlertEvent]] = defaultdict(list)
    active = telemetry.active_alerts(ids)
    for event in active:
        alerts[event.device_id].append(event)
    acked = acks.of(active)
    learnt: dict[str, WoundBaseline] = {}
    for b in telemetry.baselines(ids):
        if b.metric == DELTA_METRIC and b.current is not None:
            learnt.setdefault(b.device_id, b)  # one per device: the first rule by id
    rows = [_status(d, latest[d.id], alerts[d.id], acked, learnt.get(d.id), now) for d in devices]
    rows.sort(key=lambda r: (r.device.ward or "\uffff", r.device.room, r.device.bed, r.device.id))
    return BoardPage(rows, devices[-1].id if more else None)


def _one_more(query: DeviceQuery, limit: int) -> DeviceQuery:
    return DeviceQuery(
        scope=query.scope,
        site_id=query.site_id,
        kind=query.kind,
        ward=query.ward,
        after=query.after,
        limit=limit + 1,
    )


def _status(
    device: DeviceRow,
    latest: dict[str, Reading],
    events: list[AlertEvent],
    acked: dict[Any, Ack],
    baseline: WoundBaseline | None,
    now: datetime,
) -> PatchStatus:
    views = [AlertView(e, acked.get(alert_id(e)), plot_of(e)) for e in events]
    views.sort(key=lambda v: (-int(v.event.severity), v.event.at_us))
    seen = max((r.ts_us for r in latest.values()), default=None)
    last_seen = None if seen is None else datetime_from_us(seen)
    return PatchStatus(
        device=device,
        latest=latest,
        alerts=views,
        delta=_shown(baseline.delta if baseline is not None else _delta(events)),
        baseline=baseline.baseline if baseline is not None else None,
        last_seen=last_seen,
        state=_state(views, last_seen, now),
    )


def _state(views: list[AlertView], last_seen: datetime | None, now: datetime) -> str:
    open_ = [v for v in views if v.ack is None]
    if any(v.event.severity >= Severity.CRITICAL for v in open_):
        return "critical"
    if open_:
        return "warning"
    if views:
        return "acknowledged"
    if last_seen is None:
        return "nodata"
    return "silent" if now - last_seen > SILENT_AFTER else "ok"


def _shown(delta: float | None) -> float | None:
    """``delta`` to the board's 0.1 °C, never "-0.0" (a hair below the baseline is on it)."""
    return None if delta is None else round(delta, 1) + 0.0


def _delta(events: list[AlertEvent]) -> float | None:
    """The wound temperature's rise over its own baseline, as an active alert measured it:
    for a patch whose baseline the rules have not published (yet), e.g. before their first
    write after a start (docs/console.md)."""
    for event in events:
        evidence = event.evidence
        if evidence.get("metric") != DELTA_METRIC:
            continue
        against_baseline = evidence.get("kind") == "delta_baseline" or (
            evidence.get("kind") == "trend" and evidence.get("against") == "baseline"
        )
        signal = evidence.get("signal")
        if against_baseline and isinstance(signal, int | float):
            return float(signal)
    return None


def plot_of(event: AlertEvent) -> dict[str, Any] | None:
    """The evidence window as uPlot data (seconds, values), or None without one."""
    window = event.evidence.get("window")
    if not isinstance(window, list) or not window:
        return None
    xs: list[float] = []
    ys: list[float] = []
    for point in window[-MAX_PLOT_POINTS:]:
        if (
            isinstance(point, list)
            and len(point) == 2
            and isinstance(point[0], int)
            and isinstance(point[1], int | float)
        ):
            xs.append(point[0] / 1e6)
            ys.append(float(point[1]))
    if not xs:
        return None
    metric = event.evidence.get("metric")
    return {
        "metric": metric if isinstance(metric, str) else "",
        "x": xs,
        "y": ys,
        "min": min(ys),
        "max": max(ys),
    }


def scoped_query(
    scope: Scope, site_id: str | None, ward: str | None, after: str | None
) -> DeviceQuery:
    """The board's query in the caller's scope: the site's dressing patches (equipment has the
    engineers' screens)."""
    return DeviceQuery(
        scope=scope,
        site_id=site_id,
        kind=DeviceKind.PATCH,
        ward=ward or None,
        after=after,
        limit=PAGE,
    )
