"""The device file through TestClient: facts, tickets, alerts, plots' data, audit events, scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service import desk
from service.business_hours import BusinessCalendar
from service.console.engineer_signature import image_record
from service.lifecycle import Accept, Arrive, Dispatch, Resolve, SignOff
from service.model import Tier
from service.sla import SlaConfig
from tests.console.test_engineer_world import (
    ADMIN,
    E1,
    H1,
    H2,
    World,
    data_url,
    signature_png,
    version_of,
    world,
)


@pytest.fixture
def w() -> Iterator[World]:
    yield from world(with_readings=True)


def _resolved_and_signed(w: World) -> str:
    made = desk.open_ticket(
        w.store, "d1", Tier.URGENT, "no picture", "hospital:s1", "t1", w.clock()
    )
    now = w.clock()
    for event in (
        Dispatch("e1", "test"),
        Accept(),
        Arrive(),
        Resolve("cracked lens", "replaced", ("LENS-4",)),
        SignOff("Dr Weiss", b"report"),
    ):
        desk.apply(w.store, made.id, event, "engineer:e1", now)
    return made.id


def test_the_device_file_shows_the_device_its_tickets_and_alerts(w: World) -> None:
    ticket_id = _resolved_and_signed(w)
    page = w.client(H1).get("/console/devices/d1")
    assert page.status_code == 200, page.text
    html = page.text
    assert "SN-d1" in html and "North General" in html
    assert ticket_id in html and "cracked lens" in html and "LENS-4" in html
    assert "mains-sag" in html and "mains sag" in html
    assert 'data-series="/console/devices/d1/series"' in html
    assert "mains_voltage" in html  # the metrics of an endoscope to plot


def test_the_plot_data_are_buckets_of_the_chosen_metric(w: World) -> None:
    e1 = w.client(E1)
    answer = e1.get("/console/devices/d1/series?metric=mains_voltage&window=6h")
    assert answer.status_code == 200
    data = answer.json()
    assert data["unit"] == "V" and data["metric"] == "mains_voltage"
    assert len(data["t"]) == len(data["min"]) == len(data["avg"]) == len(data["max"]) > 0
    assert all(228.0 <= v <= 232.0 for v in data["avg"])
    assert all(
        lo <= mid <= hi for lo, mid, hi in zip(data["min"], data["avg"], data["max"], strict=True)
    )


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("metric=wound_ph", 422, "does not report"),
        ("metric=nope", 422, "does not report"),
        ("metric=mains_voltage&window=1y", 422, ""),
        ("", 422, ""),
    ],
)
def test_bad_plot_requests_are_4xx(w: World, query: str, status: int, message: str) -> None:
    answer = w.client(E1).get(f"/console/devices/d1/series?{query}")
    assert answer.status_code == status
    assert message in answer.text


def test_the_audit_events_show_the_sign_off_and_its_hash(w: World) -> None:
    ticket_id = _resolved_and_signed(w)
    admin = w.client(ADMIN)
    fragment = admin.get("/console/devices/d1/audit", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    html = fragment.text
    assert "<html" not in html  # an htmx fragment
    assert "signoff" in html and ticket_id in html
    ticket = w.store.ticket(ticket_id)
    assert ticket is not None and ticket.signature is not None
    assert ticket.signature.report_sha256 in html
    full = admin.get("/console/devices/d1/audit")
    assert full.status_code == 200 and "<html" in full.text


def test_a_hospital_cannot_open_another_hospitals_device_file(w: World) -> None:
    other = w.client(H2)
    for url in (
        "/console/devices/d1",
        "/console/devices/d1/audit",
        "/console/devices/d1/series?metric=mains_voltage",
        "/console/devices/nope",
    ):
        answer = other.get(url)
        assert answer.status_code == 404, url
        assert "SN-d1" not in answer.text
    assert other.get("/console/devices/d9").status_code == 200


def test_without_a_reading_store_the_file_says_so() -> None:
    for plain in world():
        page = plain.client(ADMIN).get("/console/devices/d1")
        assert page.status_code == 200 and "No reading store" in page.text
        series = plain.client(ADMIN).get("/console/devices/d1/series?metric=mains_voltage")
        assert series.status_code == 503


def test_the_drawn_signature_is_served_while_it_matches_the_e_signature(w: World) -> None:
    made = desk.open_ticket(w.store, "d1", Tier.URGENT, "x", "hospital:s1", "t-sig", w.clock())
    now = w.clock()
    for event in (Dispatch("e1", "t"), Accept(), Arrive(), Resolve("seal", "", ())):
        desk.apply(w.store, made.id, event, "engineer:e1", now)
    e1 = w.client(E1)
    page = e1.get(f"/console/engineer/tickets/{made.id}")
    png = signature_png()
    signed = e1.post(
        f"/console/engineer/tickets/{made.id}/sign_off",
        {"version": version_of(page.text), "signer": "Dr W", "signature": data_url(png)},
    )
    assert signed.status_code == 303
    hospital = w.client(H1)
    link = f"/console/devices/d1/signatures/{made.id}"
    assert f'href="{link}"' in hospital.get("/console/devices/d1").text
    for url in (link, f"{link}.png"):
        image = hospital.get(url)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content == png
    # Not through another device, not for an unsigned ticket, not for another hospital.
    assert hospital.get(f"/console/devices/d2/signatures/{made.id}.png").status_code == 404
    unsigned = _resolved_unsigned(w)
    assert hospital.get(f"/console/devices/d1/signatures/{unsigned}.png").status_code == 404
    assert w.client(H2).get(f"/console/devices/d1/signatures/{made.id}.png").status_code == 404
    # An image whose hash is not the e-signature's is never shown as the signature.
    forged = _resolved_and_signed(w)  # signed over other bytes than any image
    record = image_record(signature_png())
    w.store.append_audit(w.clock(), "mallory", "signature_image", forged, record)
    assert hospital.get(f"/console/devices/d1/signatures/{forged}.png").status_code == 404


def _resolved_unsigned(w: World) -> str:
    made = desk.open_ticket(w.store, "d1", Tier.GENERAL, "y", "hospital:s1", "t-uns", w.clock())
    return made.id


def test_times_are_shown_in_the_sites_zone() -> None:
    shanghai = SlaConfig(site_calendars={"s1": BusinessCalendar(timezone="Asia/Shanghai")})
    for zoned in world(sla=shanghai):
        made = desk.open_ticket(
            zoned.store, "d1", Tier.URGENT, "x", "hospital:s1", "t-zone", zoned.clock()
        )
        admin = zoned.client(ADMIN)
        for url in ("/console/devices/d1", f"/console/engineer/tickets/{made.id}"):
            page = admin.get(url)
            # Opened 09:00 UTC: 17:00 in Shanghai.
            assert "5:00\u202fPM" in page.text or "5:00 PM" in page.text, url
            assert "9:00\u202fAM" not in page.text and "9:00 AM" not in page.text, url
        utc = desk.open_ticket(
            zoned.store, "d9", Tier.URGENT, "x", "hospital:s2", "t-utc", zoned.clock()
        )
        other = admin.get(f"/console/engineer/tickets/{utc.id}")
        assert "9:00\u202fAM" in other.text or "9:00 AM" in other.text


def test_patients_use_their_own_page_not_the_device_file(w: World) -> None:
    from service.api.schemas import Principal, Role

    patient = w.client(Principal(role=Role.PATIENT, subject="p1"))
    assert patient.get("/console/devices/d1").status_code == 403
    assert patient.get("/console/devices/d1/series?metric=mains_voltage").status_code == 403
