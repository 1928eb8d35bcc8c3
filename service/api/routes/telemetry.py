"""Readings and alerts of the devices in the caller's scope, from the reading store."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from contract import METRICS, AlertEvent
from infra.telemetry.base import alert_key
from infra.time_us import us_from_datetime
from service.api.context import Telemetry
from service.api.deps import CallerDep, Id, NowDep, ReadingsDep, StoreDep
from service.api.pages import DEFAULT_PAGE, Cursor, Limit, decode_cursor, page
from service.api.schemas import BucketOut, ReadingOut
from service.api.scope import scope_of, sees_everything, visible_device
from service.api.text import ApiInstant
from service.store.queries import DeviceQuery

MAX_BUCKETS = 10_000

router = APIRouter(tags=["telemetry"])


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


@router.get("/devices/{device_id}/readings")
def device_readings(
    who: CallerDep,
    store: StoreDep,
    readings: ReadingsDep,
    now: NowDep,
    device_id: Id,
    metric: Annotated[str | None, Query(description="catalog metric name", max_length=64)] = None,
    since: ApiInstant | None = None,
    until: ApiInstant | None = None,
    bucket_s: Annotated[int | None, Query(ge=1, le=366 * 86400)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[ReadingOut] | list[BucketOut]:
    """Raw readings, or with ``bucket_s`` min/avg/max per bucket of one metric."""
    visible_device(store, who, device_id)
    if metric is not None and metric not in METRICS:
        raise _unprocessable(f"unknown metric; one of {', '.join(sorted(METRICS))}")
    end = until or now
    start = since or end - timedelta(days=1)
    if start >= end:
        raise _unprocessable("since must be < until")
    since_us, until_us = us_from_datetime(start), us_from_datetime(end)
    if not readings.available:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no reading store configured")
    if bucket_s is None:
        rows = readings.readings(device_id, metric, since_us, until_us, limit)
        return [ReadingOut(**r._asdict()) for r in rows]
    if metric is None:
        raise _unprocessable("buckets need a metric")
    if (until_us - since_us) // (bucket_s * 1_000_000) > MAX_BUCKETS:
        raise _unprocessable(f"more than {MAX_BUCKETS} buckets")
    buckets = readings.buckets(device_id, metric, bucket_s, since_us, until_us)
    return [BucketOut(**b._asdict()) for b in buckets]


_ALERT_SORT = "at"
_ALERT_SHAPE = (int, str, str, str)


def _alert_page(
    readings: Telemetry,
    device_ids: list[str] | None,
    cursor: str | None,
    limit: int,
    request: Request,
    response: Response,
) -> list[AlertEvent]:
    """One time-ordered page of alert events, with a next link when more follow."""
    after = decode_cursor(cursor, _ALERT_SORT, _ALERT_SHAPE)
    key = None if after is None else (int(after[0]), str(after[1]), str(after[2]), str(after[3]))
    found = readings.alert_page(device_ids, key, limit + 1)
    return page([(a, alert_key(a)) for a in found], limit, _ALERT_SORT, request, response)


@router.get("/devices/{device_id}/alerts")
def device_alerts(
    who: CallerDep,
    store: StoreDep,
    readings: ReadingsDep,
    request: Request,
    response: Response,
    device_id: Id,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> list[AlertEvent]:
    """Alert events of one device, oldest first, one page (``Link: rel="next"`` for more)."""
    visible_device(store, who, device_id)
    return _alert_page(readings, [device_id], cursor, limit, request, response)


@router.get("/alerts")
def alerts(
    who: CallerDep,
    store: StoreDep,
    readings: ReadingsDep,
    request: Request,
    response: Response,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> list[AlertEvent]:
    """Alert events of every device in the caller's scope, oldest first, one page."""
    mine = None
    if not sees_everything(who):
        mine = store.device_ids(DeviceQuery(scope=scope_of(who), limit=None))
    return _alert_page(readings, mine, cursor, limit, request, response)
