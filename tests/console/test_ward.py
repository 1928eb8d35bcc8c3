"""The ward board in process: scope, filters, pages, acknowledgements and hostile input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient

from contract import AlertEvent, AlertTransition, DeviceKind, Severity, WoundBaseline
from infra.telemetry.base import ReadingStore
from service.console.board import plot_of
from service.model import Device, Location
from service.store import ServiceStore
from tests.console import seed
from tests.console.conftest import csrf_of


def _alert(world: tuple[ServiceStore, ReadingStore], device: str = seed.INFECTED) -> AlertEvent:
    store, readings = world
    now = datetime.now(UTC)
    alert = seed.infection(device, now)
    seed.raise_alert(store, readings, alert, now)
    return alert


def test_a_hospital_sees_its_site_only(
    login_client: Callable[[str], TestClient],
) -> None:
    nurse = login_client("nurse")
    page = nurse.get("/console/ward").text
    assert seed.INFECTED in page and seed.HOME_PATCH in page
    assert seed.OTHER_PATCH not in page
    assert nurse.get(f"/console/ward?site={seed.OTHER_SITE}").status_code == 404
    assert nurse.get(f"/console/ward/rows?site={seed.OTHER_SITE}").status_code == 404


def test_admins_pick_any_site(login_client: Callable[[str], TestClient]) -> None:
    admin = login_client("admin")
    assert seed.OTHER_PATCH in admin.get(f"/console/ward?site={seed.OTHER_SITE}").text
    assert admin.get("/console/ward?site=nowhere").status_code == 404


def test_filter_by_ward(login_client: Callable[[str], TestClient]) -> None:
    rows = login_client("nurse").get("/console/ward/rows?ward=W2").text
    assert "patch-w201" in rows and "patch-w101" not in rows


@pytest.mark.parametrize(
    "query", ["site=../../etc", "ward=" + "x" * 200, "after=%00", "site=s1&after=a%20b"]
)
def test_hostile_filters_are_4xx(login_client: Callable[[str], TestClient], query: str) -> None:
    answer = login_client("nurse").get(f"/console/ward?{query}")
    assert 400 <= answer.status_code < 500


def test_pages_follow_each_other(
    login_client: Callable[[str], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.console.board.PAGE", 2)
    nurse = login_client("nurse")
    seen: list[str] = []
    path = "/console/ward"
    for _ in range(5):
        page = nurse.get(path).text
        seen += [
            d
            for d in ("patch-h01", "patch-w101", "patch-w102", "patch-w103", "patch-w201")
            if f'id="row-{d}"' in page
        ]
        if 'class="next"' not in page:
            break
        path = page.split('class="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert sorted(seen) == ["patch-h01", "patch-w101", "patch-w102", "patch-w103", "patch-w201"]


def test_an_alert_is_shown_with_its_evidence_and_acknowledged_once_audited(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    alert = _alert(world)
    nurse = login_client("nurse")
    page = nurse.get("/console/ward").text
    assert "badge-critical" in page and "data-plot=" in page and "+2.4" in page
    form = {
        "device_id": alert.device_id,
        "rule_id": alert.rule_id,
        "at_us": str(alert.at_us),
        "note": "  doctor informed <b>now</b> ",
        "csrf": csrf_of(nurse, "/console/ward"),
    }
    answer = nurse.post("/console/ward/ack", data=form, follow_redirects=False)
    assert answer.status_code == 303
    page = nurse.get("/console/ward").text
    assert "badge-acknowledged" in page and "badge-critical" not in page
    assert "doctor informed &lt;b&gt;now&lt;/b&gt;" in page  # escaped, never markup
    store, _ = world
    entry = store.audit_head()
    assert entry is not None and entry.action == "alert.acknowledge"
    assert entry.actor == f"hospital:{seed.SITE}" and entry.subject == alert.device_id


def test_htmx_acknowledgement_answers_no_content_and_a_trigger(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    alert = _alert(world)
    nurse = login_client("nurse")
    token = csrf_of(nurse, "/console/ward")
    form = {"device_id": alert.device_id, "rule_id": alert.rule_id, "at_us": str(alert.at_us)}
    answer = nurse.post(
        "/console/ward/ack", data=form, headers={"HX-Request": "true", "X-CSRF-Token": token}
    )
    assert answer.status_code == 204 and answer.headers["HX-Trigger"] == "acknowledged"


def test_acknowledging_what_is_not_an_active_alert_in_scope_is_404(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    alert = _alert(world)
    other = _alert(world, seed.OTHER_PATCH)
    nurse = login_client("nurse")
    token = csrf_of(nurse, "/console/ward")

    def ack(device: str, rule: str, at: int) -> int:
        form = {"device_id": device, "rule_id": rule, "at_us": str(at), "csrf": token}
        return nurse.post("/console/ward/ack", data=form).status_code

    assert ack(other.device_id, other.rule_id, other.at_us) == 404  # another hospital's
    assert ack(alert.device_id, alert.rule_id, alert.at_us + 1) == 404  # no such alert
    assert ack(alert.device_id, "other_rule", alert.at_us) == 404
    assert ack("nope", alert.rule_id, alert.at_us) == 404
    long_note = {
        "device_id": alert.device_id,
        "rule_id": alert.rule_id,
        "at_us": str(alert.at_us),
        "note": "x" * 501,
        "csrf": token,
    }
    assert nurse.post("/console/ward/ack", data=long_note).status_code == 422
    assert ack(alert.device_id, alert.rule_id, -5) == 422


def test_patients_and_engineers_roles_on_the_board(
    login_client: Callable[[str], TestClient],
) -> None:
    assert login_client("patient").get("/console/ward").status_code == 403
    assert seed.INFECTED in login_client("engineer").get("/console/ward").text


@pytest.mark.parametrize(
    "window",
    [None, "junk", [], [[1, "x"]], [["a", 1]], [[1]], [[1, 2, 3]], {"a": 1}],
)
def test_evidence_that_is_not_a_window_draws_nothing(window: object) -> None:
    event = AlertEvent(
        device_id="d",
        rule_id="r",
        severity=Severity.WARNING,
        transition=AlertTransition.RAISED,
        at_us=1,
        evidence={"window": window},
    )
    assert plot_of(event) is None


def test_evidence_windows_are_bounded() -> None:
    window = [[i, float(i)] for i in range(1, 10_001)]
    event = AlertEvent(
        device_id="d",
        rule_id="r",
        severity=Severity.WARNING,
        transition=AlertTransition.RAISED,
        at_us=1,
        evidence={"window": window, "metric": "wound_ph"},
    )
    plot = plot_of(event)
    assert plot is not None and len(plot["x"]) == 2000 and plot["metric"] == "wound_ph"


def test_the_board_lists_patches_not_equipment(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    scope = Device(
        id="endo-1",
        kind=DeviceKind.ENDOSCOPE,
        model="EX-1",
        serial="SN-endo-1",
        installed_on=date(2025, 1, 1),
        site_id=seed.SITE,
        location=Location(ward="W1", room="OR"),
    )
    store.put_device(scope)
    page = login_client("nurse").get("/console/ward").text
    assert "endo-1" not in page and seed.INFECTED in page


def test_refused_form_input_is_a_page_naming_the_fields_not_echoing_them(
    login_client: Callable[[str], TestClient],
) -> None:
    nurse = login_client("nurse")
    token = csrf_of(nurse, "/console/ward")
    form = {"device_id": "<script>x</script>", "rule_id": "r", "at_us": "soon", "csrf": token}
    answer = nurse.post("/console/ward/ack", data=form)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert "device_id" in answer.text and "at_us" in answer.text
    assert "<script>x" not in answer.text and "soon" not in answer.text


def test_the_board_says_which_bed(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, _ = world
    infected = store.device(seed.INFECTED)
    assert infected is not None and infected.location is not None
    where = infected.location.model_copy(update={"bed": "7"})
    store.put_device(infected.model_copy(update={"location": where}))
    page = login_client("nurse").get("/console/ward").text
    row = page[page.index(f'id="row-{seed.INFECTED}"') :]
    assert '<span class="bed">bed 7</span>' in row[: row.index("</tr>")]


def _delta_cell(page: str, device: str) -> str:
    row = page.split(f'id="row-{device}"', 1)[1].split("</tr>", 1)[0]
    return row.split('class="delta"', 1)[1].split("</td>", 1)[0]


def test_every_patch_shows_how_far_it_sits_over_its_own_baseline(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    _, readings = world
    readings.store_baselines(
        [
            WoundBaseline("patch-w101", "dressing.temp.rise", "wound_temp", 33.0, 33.4, 1),
            WoundBaseline("patch-w102", "dressing.temp.rise", "wound_temp", 33.5, 33.2, 1),
            WoundBaseline("patch-w201", "dressing.temp.rise", "wound_temp", 33.5, None, 1),
            WoundBaseline("patch-w201", "dressing.ph.rise", "wound_ph", 7.1, 7.3, 1),
            WoundBaseline(seed.INFECTED, "dressing.temp.rise", "wound_temp", 33.0, 32.98, 1),
        ]
    )
    page = login_client("nurse").get("/console/ward").text
    # No alert on either: the rules' published baseline and 1 h median, signed.
    rising = _delta_cell(page, "patch-w101")
    assert ">+0.4" in rising and "baseline of 33.0 °C" in rising
    assert ">-0.3" in _delta_cell(page, "patch-w102")
    assert _delta_cell(page, seed.INFECTED).endswith(">+0.0")  # a hair below: not "-0.0"
    # No current value (e.g. just after a dressing change), and pH is not this column.
    assert 'class="none"' in _delta_cell(page, "patch-w201")
    assert 'class="none"' in _delta_cell(page, seed.HOME_PATCH)  # nothing learnt yet


def test_an_alert_of_the_packs_trend_rule_gives_the_delta_before_any_baseline_is_published(
    login_client: Callable[[str], TestClient], world: tuple[ServiceStore, ReadingStore]
) -> None:
    store, readings = world
    now = datetime.now(UTC)
    trend = seed.infection(seed.INFECTED, now)
    evidence = {**trend.evidence, "kind": "trend", "against": "baseline", "signal": 0.9}
    alert = trend.model_copy(
        update={"rule_id": "dressing.temp.rise", "severity": Severity.INFO, "evidence": evidence}
    )
    seed.raise_alert(store, readings, alert, now)
    assert ">+0.9" in _delta_cell(login_client("nurse").get("/console/ward").text, seed.INFECTED)
