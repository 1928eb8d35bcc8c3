"""What a caller may see: admins and engineers everything, a hospital its site, a patient their kit.

An object outside the caller's scope answers 404 like a missing one, with one body for every
kind of object on every route, so ids cannot be probed: not whether they exist, nor of what kind.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from service.api.schemas import Principal, Role
from service.model import Device, Patient, Site, Ticket
from service.store import ServiceStore
from service.store.queries import Scope

NOT_FOUND = "not found"


def not_found() -> HTTPException:
    """The one 404 of the API: the same for missing and for out-of-scope objects of any kind."""
    return HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)


def actor(who: Principal) -> str:
    """The audit log's name for the caller."""
    return f"{who.role}:{who.subject or '-'}"


def sees_everything(who: Principal) -> bool:
    """Admins and engineers see every device."""
    return who.role in (Role.ADMIN, Role.ENGINEER)


def sees_device(who: Principal, device: Device) -> bool:
    """Whether ``device`` lies in the caller's scope."""
    if sees_everything(who):
        return True
    if who.role is Role.HOSPITAL:
        return device.site_id == who.subject
    return device.patient is not None and device.patient == who.subject


def visible_device(store: ServiceStore, who: Principal, device_id: str) -> Device:
    """The device, or 404 if it is missing or out of scope."""
    device = store.device(device_id)
    if device is None or not sees_device(who, device):
        raise not_found()
    return device


def scope_of(who: Principal) -> Scope:
    """The caller's scope as the store's SQL predicate: the same rule as ``sees_device``."""
    if sees_everything(who):
        return Scope()
    if not who.subject:
        return Scope(empty=True)
    if who.role is Role.HOSPITAL:
        return Scope(site_id=who.subject)
    return Scope(patient=who.subject)


def visible_ticket(store: ServiceStore, who: Principal, ticket_id: str) -> Ticket:
    """The ticket, or 404 if it is missing or its device is out of scope."""
    ticket = store.ticket(ticket_id)
    if ticket is None:
        raise not_found()
    visible_device(store, who, ticket.device_id)
    return ticket


def visible_site(store: ServiceStore, who: Principal, site_id: str) -> Site:
    """The site, or 404 if it is missing or not the caller's (a hospital sees only its own)."""
    site = store.site(site_id)
    mine = sees_everything(who) or (who.role is Role.HOSPITAL and who.subject == site_id)
    if site is None or not mine:
        raise not_found()
    return site


def visible_patient(store: ServiceStore, who: Principal, patient_id: str) -> Patient:
    """The patient, or 404 if missing or out of scope: the patient themselves, their
    hospital, admins and engineers."""
    found = store.patient(patient_id)
    allowed = (
        sees_everything(who)
        or (who.role is Role.PATIENT and who.subject == patient_id)
        or (who.role is Role.HOSPITAL and found is not None and found.site_id == who.subject)
    )
    if found is None or not allowed:
        raise not_found()
    return found
