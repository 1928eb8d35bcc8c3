"""Lifecycle events by name: who may send each, and the event a request body stands for."""

from __future__ import annotations

from collections.abc import Callable

from service.api.requests import EventRequest
from service.api.schemas import Role
from service.lifecycle import (
    Accept,
    Arrive,
    Close,
    Depart,
    Dispatch,
    Event,
    FollowUp,
    Pause,
    Resolve,
    Resume,
    SignOff,
)

_FIELD_STAFF = frozenset({Role.ADMIN, Role.ENGINEER})

# Which roles may send which event; engineers additionally only on their own tickets.
# The keys are exactly the names of ``requests.EventName`` (a probe test checks).
EVENT_ROLES: dict[str, frozenset[Role]] = {
    "dispatch": frozenset({Role.ADMIN}),
    "accept": _FIELD_STAFF,
    "arrive": _FIELD_STAFF,
    "depart": _FIELD_STAFF,
    "pause": _FIELD_STAFF,
    "resume": _FIELD_STAFF,
    "resolve": _FIELD_STAFF,
    "sign_off": frozenset({Role.ADMIN, Role.HOSPITAL, Role.PATIENT}),
    "follow_up": frozenset({Role.ADMIN}),
    "close": frozenset({Role.ADMIN}),
}


def build_event(body: EventRequest) -> Event:
    """The lifecycle event ``body`` names (its name must be a key of EVENT_ROLES)."""
    builders: dict[str, Callable[[], Event]] = {
        "dispatch": lambda: Dispatch(body.engineer_id, body.reason or "manual dispatch"),
        "accept": Accept,
        "arrive": Arrive,
        "depart": lambda: Depart(body.note),
        "pause": lambda: Pause(body.note),
        "resume": Resume,
        "resolve": lambda: Resolve(body.fault, body.resolution, tuple(body.parts)),
        "sign_off": lambda: SignOff(body.signer, body.report.encode()),
        "follow_up": lambda: FollowUp(body.satisfaction),
        "close": Close,
    }
    return builders[body.event]()
