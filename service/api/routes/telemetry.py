"""Readings and alerts of the devices in the caller's scope, from the reading store."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from contract import METRICS, AlertEvent
from infra.time_us import us_from_datetime
from service.api.deps import CallerDep, Id, NowDep, ReadingsDep, StoreDep
from service.api.schemas import BucketOut, ReadingOut
from service.api.scope import sees_everything, visible_device, visible_devices
from service.api.text import ApiInstant

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


@router.get("/devices/{device_id}/alerts")
def device_alerts(
    who: CallerDep, store: StoreDep, readings: ReadingsDep, device_id: Id
) -> list[AlertEvent]:
    """Alert events of one device."""
    visible_device(store, who, device_id)
    return readings.alerts(device_id)


@router.get("/alerts")
def alerts(who: CallerDep, store: StoreDep, readings: ReadingsDep) -> list[AlertEvent]:
    """Alert events of every device in the caller's scope."""
    if sees_everything(who):
        return readings.alerts(None)
    mine = {d.id for d in visible_devices(store, who)}
    return [a for a in readings.alerts(None) if a.device_id in mine]
