"""Creating and replacing sites, devices, engineers and patients (admins only, audited)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status

from service import desk
from service.api.deps import AdminDep, Id, NowDep, StoreDep
from service.api.requests import DeviceIn, EngineerIn, PatientIn, SiteIn
from service.api.schemas import Principal
from service.api.scope import actor
from service.model import Device, Engineer, Patient, Site
from service.store import ServiceStore

router = APIRouter(tags=["installed base"])


def _put(
    store: ServiceStore,
    who: Principal,
    item: Site | Device | Patient | Engineer,
    key: str,
    now: datetime,
) -> None:
    if item.id != key:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"body id {item.id} is not {key}"
        )
    desk.put_installed(store, item, actor(who), now)


@router.put("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
def put_device(who: AdminDep, store: StoreDep, now: NowDep, device_id: Id, body: DeviceIn) -> None:
    """Create or replace a device of an existing site."""
    if store.site(body.site_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"site {body.site_id} does not exist"
        )
    _put(store, who, body.domain(), device_id, now)


@router.put("/sites/{site_id}", status_code=status.HTTP_204_NO_CONTENT)
def put_site(who: AdminDep, store: StoreDep, now: NowDep, site_id: Id, body: SiteIn) -> None:
    """Create or replace a site."""
    _put(store, who, body.domain(), site_id, now)


@router.put("/engineers/{engineer_id}", status_code=status.HTTP_204_NO_CONTENT)
def put_engineer(
    who: AdminDep, store: StoreDep, now: NowDep, engineer_id: Id, body: EngineerIn
) -> None:
    """Create or replace an engineer."""
    _put(store, who, body.domain(), engineer_id, now)


@router.put("/patients/{patient_id}", status_code=status.HTTP_204_NO_CONTENT)
def put_patient(
    who: AdminDep, store: StoreDep, now: NowDep, patient_id: Id, body: PatientIn
) -> None:
    """Create or replace a patient."""
    _put(store, who, body.domain(), patient_id, now)
