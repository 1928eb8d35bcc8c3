"""Domain model: validation and derived properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from contract import DeviceKind
from service.lifecycle import Arrive, Depart, Pause, Resume
from service.model import Engineer, Evidence, Signature, TicketState
from tests.service.factories import T0, device, on_site, ticket, walk


def test_times_are_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    t = ticket(at=datetime(2026, 3, 2, 10, tzinfo=cet))
    assert t.opened_at == T0 and t.opened_at.tzinfo is UTC


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValidationError):
        ticket(at=datetime(2026, 3, 2, 9))


def test_new_ticket_is_open_with_history() -> None:
    t = ticket()
    assert t.is_open and t.state is TicketState.OPEN
    assert t.entered(TicketState.OPEN) == T0 and t.last_change == T0


def test_site_visits_ignore_returns_from_a_pause() -> None:
    t = walk(on_site(ticket(), T0), (Pause(), T0), (Resume(), T0))
    assert t.site_visits == 1
    t = walk(t, (Depart(), T0), (Arrive(), T0))
    assert t.site_visits == 2


def test_signature_must_be_a_sha256_hex() -> None:
    with pytest.raises(ValidationError):
        Signature(signer="x", report_sha256="abc", at=T0)


def test_engineer_capacity_cannot_be_negative() -> None:
    with pytest.raises(ValidationError):
        Engineer(id="e", name="E", region="r", capacity=-1)


def test_device_family_is_its_kind() -> None:
    assert device(kind=DeviceKind.ULTRASOUND).family is DeviceKind.ULTRASOUND


def test_models_are_frozen_and_json_round_trip() -> None:
    t = ticket().model_copy(update={"evidence": (Evidence(at=T0, severity=3, data={"x": 1}),)})
    assert type(t).model_validate_json(t.model_dump_json()) == t
    with pytest.raises(ValidationError):
        t.state = TicketState.CLOSED  # type: ignore[misc]
