"""What an engineer does to a ticket from the console, through the same desk calls as the API.

Each action is one lifecycle event applied by ``desk.apply`` (so the audit rows are the API's)
with the version the page was rendered at: a ticket changed meanwhile is refused, not
overwritten. Errors come back as ``ActionRefused`` with the HTTP status and a message for
the person, never as a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from fastapi import status

from service import desk
from service.api.schemas import Principal, Role
from service.api.scope import actor
from service.concurrency import ConcurrentUpdate
from service.console import engineer_signature, i18n
from service.console.i18n import N_, gettext
from service.lifecycle import (
    Accept,
    Arrive,
    Depart,
    Event,
    Pause,
    Resolve,
    Resume,
    SignOff,
    TransitionError,
)
from service.model import Ticket
from service.store import ServiceStore

MAX_NOTE = 2000
MAX_NAME = 200
MAX_PARTS = 50
PART = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")  # the API's part-number pattern

# Action name → what the button says (a msgid); the order is the order of the buttons.
ACTIONS: dict[str, str] = {
    "accept": N_("Accept"),
    "arrive": N_("Arrived on site"),
    "pause": N_("Pause: waiting for customer"),
    "resume": N_("Resume"),
    "depart": N_("Leave without fix"),
    "resolve": N_("Resolve"),
    "sign_off": N_("Customer sign-off"),
}
# Lifecycle event name (``allowed_events``) → console action.
BY_EVENT = {
    "Accept": "accept",
    "Arrive": "arrive",
    "Pause": "pause",
    "Resume": "resume",
    "Depart": "depart",
    "Resolve": "resolve",
    "SignOff": "sign_off",
}


class ActionRefused(Exception):
    """The action was not applied: ``status`` for the response, ``message`` for the person.

    ``message`` is a msgid with ``%(name)s`` slots filled from ``variables`` when shown, so it
    is translated in the reader's language at render time.
    """

    def __init__(self, status_code: int, message: str, **variables: object) -> None:
        super().__init__(message % variables if variables else message)
        self.status = status_code
        self.message = message
        self.variables = variables

    def text(self) -> str:
        """The message in the current language."""
        return gettext(self.message, **self.variables)


def _unprocessable(message: str, **variables: object) -> ActionRefused:
    return ActionRefused(status.HTTP_422_UNPROCESSABLE_CONTENT, message, **variables)


def _text(form: Mapping[str, str], name: str, limit: int) -> str:
    """A trimmed text field; 422 past ``limit`` characters or with control characters."""
    value = form.get(name, "").strip()
    if len(value) > limit:
        raise _unprocessable(
            "%(field)s is longer than %(limit)s characters", field=name, limit=limit
        )
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise _unprocessable("%(field)s contains control characters", field=name)
    return value


def _parts(raw: str) -> tuple[str, ...]:
    """Part numbers separated by commas, spaces or new lines; 422 for a malformed one."""
    parts = tuple(p for p in re.split(r"[\s,;]+", raw) if p)
    if len(parts) > MAX_PARTS:
        raise _unprocessable("at most %(count)s part numbers", count=MAX_PARTS)
    bad = [p for p in parts if not PART.match(p)]
    if bad:
        raise _unprocessable(
            "not a part number: %(part)s (letters, digits and . _ : / - only)", part=bad[0][:64]
        )
    return parts


@dataclass(frozen=True, slots=True)
class Signing:
    """What a typed signature's attestation names besides the form: the ticket, the moment and
    the language the statement was shown in."""

    ticket_id: str = ""
    at: datetime = datetime.min
    language: str = i18n.DEFAULT


def event_for(action: str, form: Mapping[str, str], signing: Signing | None = None) -> Event:
    """The lifecycle event of ``action`` with its fields from ``form``; 422 when unusable."""
    match action:
        case "accept":
            return Accept()
        case "arrive":
            return Arrive()
        case "pause":
            return Pause(_text(form, "note", MAX_NOTE))
        case "resume":
            return Resume()
        case "depart":
            return Depart(_text(form, "note", MAX_NOTE))
        case "resolve":
            fault = _text(form, "fault", MAX_NAME)
            if not fault:
                raise _unprocessable("name the fault to resolve the ticket")
            parts = _parts(form.get("parts", "")[:10_000])
            return Resolve(fault, _text(form, "resolution", MAX_NOTE), parts)
        case "sign_off":
            return _sign_off(form, signing or Signing())
    raise _unprocessable("unknown action; one of %(actions)s", actions=", ".join(ACTIONS))


def _sign_off(form: Mapping[str, str], signing: Signing) -> SignOff:
    """A drawn (PNG) or typed (attestation) sign-off; 422 when it is neither."""
    signer = _text(form, "signer", MAX_NAME)
    if not signer:
        raise _unprocessable("enter the name of the person signing")
    if form.get("signature_mode", "drawn") == "typed":
        if form.get("consent") != "yes":
            raise _unprocessable("tick the statement to sign with the typed name")
        attestation = engineer_signature.typed_attestation(
            signer, signing.ticket_id, signing.at, signing.language
        )
        return SignOff(signer, attestation)
    try:
        png = engineer_signature.decode(form.get("signature", ""))
    except engineer_signature.BadSignature as exc:
        raise _unprocessable(exc.message, **exc.variables) from None
    return SignOff(signer, png)


def may_act(who: Principal, ticket: Ticket) -> None:
    """403 unless ``who`` is the ticket's engineer (or an admin), as the API decides."""
    if who.role is Role.ADMIN:
        return
    if who.role is not Role.ENGINEER or ticket.assignee != who.subject:
        raise ActionRefused(status.HTTP_403_FORBIDDEN, "this ticket is not assigned to you")


def _version(raw: str) -> int:
    try:
        version = int(raw)
    except ValueError:
        raise _unprocessable("the form is missing the ticket's version; reload the page") from None
    if version < 0:
        raise _unprocessable("the ticket's version must not be negative")
    return version


def act(
    store: ServiceStore,
    who: Principal,
    ticket: Ticket,
    action: str,
    form: Mapping[str, str],
    now: datetime,
    language: str = i18n.DEFAULT,
) -> Ticket:
    """Apply ``action`` to ``ticket`` (already scope-checked) as ``who``; the stored result.

    A sign-off keeps the drawn PNG (or the typed attestation) in an audit row of its own, in the
    same transaction, so the bytes whose hash the e-signature records are never lost nor kept
    without the sign-off. ``language``: the one the page showed the typed statement in.
    """
    may_act(who, ticket)
    event = event_for(action, form, Signing(ticket.id, now, language))
    version = _version(form.get("version", ""))
    try:
        with store.atomic():
            moved = desk.apply(store, ticket.id, event, actor(who), now, expected_version=version)
            if isinstance(event, SignOff):
                kept, record = _signature_row(event.report)
                store.append_audit(now, actor(who), kept, ticket.id, record)
    except ConcurrentUpdate:
        raise ActionRefused(
            status.HTTP_409_CONFLICT,
            "someone else changed this ticket since you opened it; "
            "the page now shows its current state — check it and try again",
        ) from None
    except TransitionError as exc:
        raise ActionRefused(
            status.HTTP_409_CONFLICT, "not allowed now: %(reason)s", reason=str(exc)
        ) from None
    except desk.NotFound:
        raise ActionRefused(status.HTTP_404_NOT_FOUND, "not found") from None
    return moved


def _signature_row(report: bytes) -> tuple[str, dict[str, object]]:
    """The audit action and data that keep a sign-off's signed bytes."""
    if engineer_signature.is_typed(report):
        return engineer_signature.TYPED_ACTION, engineer_signature.typed_record(report)
    return engineer_signature.IMAGE_ACTION, engineer_signature.image_record(report)
