"""Installed base, KPIs, report download and audit status through TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service import desk
from service.lifecycle import Accept, Arrive, Resolve
from service.model import Tier
from tests.console.test_engineer_world import ADMIN, E1, H1, World, world


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


DEVICE = {
    "id": "d5",
    "kind": "ultrasound",
    "model": "US-9",
    "serial": "SN-5",
    "installed_on": "2025-05-01",
    "site_id": "s1",
    "ward": "ICU",
    "room": "3",
    "bed": "2B",
}


def test_the_installed_base_lists_sites_devices_engineers(w: World) -> None:
    page = w.client(ADMIN).get("/console/admin/base")
    assert page.status_code == 200
    for text in ("North General", "North Clinic", "d1", "d9", "Engineer e3"):
        assert text in page.text
    one_site = w.client(ADMIN).get("/console/admin/base?site=s2")
    devices = one_site.text.split('id="devices-table"')[1].split("</table>")[0]
    assert "d9" in devices and "d1" not in devices
    found = w.client(ADMIN).get("/console/admin/base?patient=p1")
    assert 'id="patient-found"' in found.text
    missing = w.client(ADMIN).get("/console/admin/base?patient=nobody")
    assert "No patient nobody" in missing.text


def test_an_admin_creates_and_edits_a_device_with_an_audit_entry(w: World) -> None:
    admin = w.client(ADMIN)
    assert admin.get("/console/admin/devices/new").status_code == 200
    made = admin.post("/console/admin/devices/new", DEVICE)
    assert made.status_code == 303, made.text
    device = w.store.device("d5")
    assert device is not None and device.location is not None and device.location.ward == "ICU"
    assert device.location.bed == "2B"
    form = admin.get(made.headers["location"])
    assert form.status_code == 200 and "Saved." in form.text and 'value="US-9"' in form.text
    edited = admin.post("/console/admin/devices/d5/edit", {**DEVICE, "model": "US-10", "id": "x"})
    assert edited.status_code == 303
    device = w.store.device("d5")
    assert device is not None and device.model == "US-10"  # the id comes from the path
    actions = [e.action for e in w.store.audit_log() if e.subject == "d5"]
    assert actions == ["device_created", "device_replaced"]
    assert [e.actor for e in w.store.audit_log() if e.subject == "d5"] == ["admin:desk"] * 2


def test_an_admin_creates_a_site_an_engineer_and_a_patient(w: World) -> None:
    admin = w.client(ADMIN)
    site = admin.post("/console/admin/sites/new", {"id": "s3", "hospital": "South", "region": "s"})
    assert site.status_code == 303
    engineer = admin.http.post(
        "/console/admin/engineers/new",
        data={
            "csrf": admin.csrf,
            "id": "e9",
            "name": "Nine",
            "region": "s",
            "skills": ["patch", "ultrasound"],
            "capacity": "4",
        },
    )
    assert engineer.status_code == 303, engineer.text
    stored = w.store.engineer("e9")
    assert stored is not None and {str(s) for s in stored.skills} == {"patch", "ultrasound"}
    patient = admin.post(
        "/console/admin/patients/new", {"id": "p9", "site_id": "s3", "kit": "d1 d2"}
    )
    assert patient.status_code == 303
    kept = w.store.patient("p9")
    assert kept is not None and kept.kit == ("d1", "d2")


@pytest.mark.parametrize(
    ("kind", "fields", "status", "field", "message"),
    [
        ("devices", {**DEVICE, "model": ""}, 422, "model", "required"),
        ("devices", {**DEVICE, "installed_on": "yesterday"}, 422, "installed_on", "date"),
        ("devices", {**DEVICE, "installed_on": "3001-01-01"}, 422, "installed_on", "between"),
        ("devices", {**DEVICE, "kind": "toaster"}, 422, "kind", "Input should be"),
        ("devices", {**DEVICE, "site_id": "s404"}, 422, "site_id", "no such site"),
        ("devices", {**DEVICE, "id": "bad id"}, 422, "id", "pattern"),
        ("devices", {**DEVICE, "id": "d1"}, 409, "id", "already taken"),
        ("devices", {**DEVICE, "ward": "x" * 129}, 422, "ward", "at most 128"),
        (
            "engineers",
            {"id": "e9", "name": "N", "region": "r", "capacity": "-1"},
            422,
            "capacity",
            "greater than or equal",
        ),
        (
            "engineers",
            {"id": "e9", "name": "N", "region": "r", "capacity": "many"},
            422,
            "capacity",
            "integer",
        ),
        ("sites", {"id": "s9", "hospital": "a\x00b", "region": "r"}, 422, "hospital", ""),
        ("patients", {"id": "p9", "site_id": "s404"}, 422, "site_id", "no such site"),
    ],
)
def test_bad_forms_are_4xx_with_the_problem_next_to_the_field(
    w: World, kind: str, fields: dict[str, str], status: int, field: str, message: str
) -> None:
    answer = w.client(ADMIN).post(f"/console/admin/{kind}/new", fields)
    assert answer.status_code == status, answer.text
    assert f'id="e-{field}"' in answer.text and 'aria-invalid="true"' in answer.text
    assert message in answer.text
    if kind == "devices" and fields["id"] == "d1":
        assert w.store.device("d1") is not None and w.store.device("d1").model == "EX-100"  # type: ignore[union-attr]


def test_unknown_kinds_and_records_are_404_or_422(w: World) -> None:
    admin = w.client(ADMIN)
    assert admin.get("/console/admin/toasters/new").status_code == 422
    assert admin.get("/console/admin/devices/nope/edit").status_code == 404
    assert admin.post("/console/admin/devices/nope/edit", DEVICE).status_code == 404


def test_kpis_show_attainment_and_failure_rates(w: World) -> None:
    ticket = desk.open_ticket(w.store, "d1", Tier.GENERAL, "x", "hospital:s1", "t1", w.clock())
    for event in (Accept(), Arrive(), Resolve("worn seal", "", ())):
        desk.apply(w.store, ticket.id, event, f"engineer:{ticket.assignee}", w.clock())
    page = w.client(ADMIN).get("/console/admin/kpis")
    assert page.status_code == 200
    assert 'id="kpi-ftf">100.0 %' in page.text
    assert "EX-100" in page.text and "worn seal" in page.text
    assert 'id="kpi-plot-data"' in page.text and '"models": ["EX-100"]' in page.text
    assert w.client(ADMIN).get("/console/admin/kpis?site=s404").status_code == 404


def test_the_half_yearly_report_downloads_as_a_file(w: World) -> None:
    admin = w.client(ADMIN)
    answer = admin.get("/console/admin/reports/s1?day=2026-03-02")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == (
        'attachment; filename="vigil-report-s1-2026-H1.html"'
    )
    assert "North General" in answer.text
    assert admin.get("/console/admin/reports/s404").status_code == 404
    assert admin.get("/console/admin/reports/s1?day=someday").status_code == 422


def test_the_audit_chain_status_is_shown_and_verified(w: World) -> None:
    desk.open_ticket(w.store, "d1", Tier.GENERAL, "x", "hospital:s1", "t1", w.clock())
    admin = w.client(ADMIN)
    page = admin.get("/console/admin/audit")
    assert page.status_code == 200 and 'id="audit-rows">2<' in page.text
    result = admin.get("/console/admin/audit/verify", headers={"HX-Request": "true"})
    assert result.status_code == 200 and 'id="audit-ok"' in result.text
    # Someone with database access rewrites who opened the ticket.
    w.store._db.executescript(
        "DROP TRIGGER audit_no_update; UPDATE audit_log SET actor = 'mallory' WHERE seq = 1;"
    )
    broken = admin.get("/console/admin/audit/verify")
    assert 'id="audit-broken"' in broken.text and "row 1" in broken.text


def test_admin_screens_are_for_admins_only(w: World) -> None:
    for who in (E1, H1):
        client = w.client(who)
        for url in (
            "/console/admin/base",
            "/console/admin/devices/new",
            "/console/admin/kpis",
            "/console/admin/reports/s1",
            "/console/admin/audit",
            "/console/admin/audit/verify",
        ):
            assert client.get(url).status_code == 403, (who, url)
        assert client.post("/console/admin/devices/new", DEVICE).status_code == 403
    assert w.store.device("d5") is None


def test_empty_filter_fields_mean_all_and_bad_ones_are_422(w: World) -> None:
    admin = w.client(ADMIN)
    assert admin.get("/console/admin/kpis?site=").status_code == 200
    assert admin.get("/console/admin/base?site=&patient=").status_code == 200
    assert admin.get("/console/admin/base?site=bad%20id").status_code == 422
    assert admin.get("/console/engineer?engineer=").status_code == 200
    assert admin.get("/console/engineer?engineer=bad%20id").status_code == 422


def test_the_report_form_leads_to_the_half_year_of_the_chosen_day(w: World) -> None:
    admin = w.client(ADMIN)
    answer = admin.get("/console/admin/reports?site=s2&day=2025-09-30")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/admin/reports/s2?day=2025-09-30"
    report = admin.get(answer.headers["location"])
    assert 'filename="vigil-report-s2-2025-H2.html"' in report.headers["content-disposition"]
    for bad in ("site=s2&day=soon", "site=bad%20id&day=2025-01-01", "day=2025-01-01"):
        assert admin.get(f"/console/admin/reports?{bad}").status_code == 422, bad


def test_admin_posts_without_the_csrf_token_are_refused(w: World) -> None:
    admin = w.client(ADMIN)
    refused = admin.http.post("/console/admin/devices/new", data=DEVICE)
    assert refused.status_code == 403
    wrong = admin.http.post("/console/admin/devices/new", data={**DEVICE, "csrf": "guess"})
    assert wrong.status_code == 403
    assert w.store.device("d5") is None
