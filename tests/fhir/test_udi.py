"""GS1 UDI barcodes, registration from a barcode, recalled/expired lots, and lot traces."""

from __future__ import annotations

import csv
import io
import string
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Reading
from service.fhir.validate import validate
from service.store import SqliteStore
from service.traceability.gs1 import GS, UdiError, parse_udi
from service.traceability.model import Recall
from tests.fhir.world import ADMIN, H1, H2, NOW, P1, api, auth

GTIN = "09506000134376"  # the GS1 example GTIN-13 as a GTIN-14


@pytest.mark.parametrize(
    ("text", "expiry", "lot", "serial"),
    [
        # The human-readable interpretation printed under a label.
        (f"(01){GTIN}(17)270131(10)LOT-A(21)SN123", date(2027, 1, 31), "LOT-A", "SN123"),
        # What a scanner sends for a GS1 DataMatrix: ]d2, FNC1 as GS after variable fields.
        (f"]d201{GTIN}17270131" + "10LOT-A" + GS + "21SN123", date(2027, 1, 31), "LOT-A", "SN123"),
        # GS1-128 (]C1), lot before expiry: the GS ends the variable-length lot.
        (f"]C101{GTIN}10LOT-A{GS}17270100", date(2027, 1, 31), "LOT-A", ""),
        # A leading FNC1 (GS) and a serial only.
        (f"{GS}01{GTIN}21ABC-987", None, "", "ABC-987"),
        # GS typed where a shell cannot send 0x1D.
        (f"01{GTIN}10LOT-A<GS>21SN123", None, "LOT-A", "SN123"),
        (f"01{GTIN}10LOT-A\\x1d21SN123", None, "LOT-A", "SN123"),
        # GS1 Digital Link.
        (f"https://id.gs1.org/01/{GTIN}/10/LOT-A/21/SN123?17=270131", date(2027, 1, 31), "LOT-A",
         "SN123"),
        # A GTIN-12 (UPC) in a GS1 DataMatrix is padded to 14 digits.
        ("(01)00614141999996(10)X1", None, "X1", ""),
    ],
)  # fmt: skip
def test_gs1_element_strings_parse(text: str, expiry: date | None, lot: str, serial: str) -> None:
    udi = parse_udi(text)
    assert (udi.expiry, udi.lot, udi.serial) == (expiry, lot, serial)
    assert udi.gtin in (GTIN, "00614141999996")
    assert udi.hri.startswith(f"(01){udi.gtin}")
    assert parse_udi(udi.hri) == udi


def test_without_a_separator_a_variable_field_swallows_the_rest() -> None:
    # Why scanners send FNC1: the lot (up to 20 characters) runs on into the serial.
    assert parse_udi(f"01{GTIN}10LOT-A21SN123").lot == "LOT-A21SN123"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 600, "longer than"),
        ("hello world", "not a GS1 barcode"),
        ("]", "not a GS1 barcode"),  # biip itself fails with IndexError here
        ("(10)LOT-A(21)SN1", "no (01) GTIN"),
        ("(01)09506000134377", "check digit"),
        ("(01)0950600013437", "not a GS1 barcode"),
        (f"(01){GTIN}(17)271345", "not a GS1 barcode"),
    ],
)
def test_what_is_no_udi_is_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(UdiError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_udi(text)


World = tuple[TestClient, SqliteStore, list[Reading]]


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with api(tmp_path_factory.mktemp("udi")) as built:
        yield built


def register(client: TestClient, token: str = ADMIN, **fields: Any) -> Any:
    body = {"device_id": "k9", "kind": "patch", "model": "WD-2", "site_id": "s1"} | fields
    return client.post("/udi/register", headers=auth(token), json=body)


def test_a_recalled_lot_raises_a_critical_alert_and_one_ticket(world: World) -> None:
    client, store, _ = world
    store.put_recall(Recall(lot="LOT-R", reason="seal leaks", recorded_at=NOW))
    barcode = f"(01){GTIN}(17)300101(10)LOT-R(21)SN9"
    made = register(client, barcode=barcode, patient="p1", ble_address="00-1C-05-FF-E8-74")
    assert made.status_code == 201, made.text
    body = made.json()
    assert [a["rule_id"] for a in body["alerts"]] == ["udi.lot_recalled"]
    assert body["alerts"][0]["severity"] == 3 and len(body["tickets"]) == 1
    ticket = store.ticket(body["tickets"][0])
    assert ticket is not None and ticket.device_id == "k9" and ticket.tier == "urgent"
    patient = store.patient("p1")
    assert patient is not None and "k9" in patient.kit
    again = register(client, barcode=barcode, patient="p1")
    assert again.status_code == 201 and again.json()["tickets"] == []
    device = client.get("/fhir/Device/k9", headers=auth(ADMIN)).json()
    validate(device)
    assert device["udiCarrier"][0]["carrierHRF"] == barcode
    assert device["identifier"][1]["value"] == "00-1C-05-FF-E8-74"
    scan = client.post("/udi/scan", headers=auth(H1), json={"barcode": barcode}).json()
    assert scan["recalled"] and scan["recall_reasons"] == ["seal leaks"]
    assert scan["devices"] == ["k9"]


def test_an_expired_patch_raises_a_warning(world: World) -> None:
    client, _, _ = world
    made = register(client, H1, barcode=f"01{GTIN}17250101" + f"10LOT-E{GS}21SN1")
    assert made.status_code == 201, made.text
    assert [a["rule_id"] for a in made.json()["alerts"]] == ["udi.expired"]
    assert made.json()["alerts"][0]["severity"] == 2


@pytest.mark.parametrize(
    ("token", "fields", "status"),
    [
        (H2, {"barcode": f"(01){GTIN}(10)L"}, 404),  # another hospital's site
        (P1, {"barcode": f"(01){GTIN}(10)L"}, 403),
        (ADMIN, {"barcode": "(01)09506000134377"}, 422),
        (ADMIN, {"barcode": f"(01){GTIN}\x00"}, 422),
        (ADMIN, {"barcode": f"(01){GTIN}", "site_id": "nowhere"}, 409),
        (ADMIN, {"barcode": f"(01){GTIN}", "ble_address": "zz"}, 422),
        (ADMIN, {"barcode": f"(01){GTIN}", "device_id": "k:1"}, 409),  # registered with another
    ],
)
def test_registration_refusals(
    world: World, token: str, fields: dict[str, str], status: int
) -> None:
    client, _, _ = world
    if fields.get("device_id") == "k:1":
        register(client, barcode=f"(01){GTIN}(21)FIRST", device_id="k:1", patient="p1")
    assert register(client, token, **fields).status_code == status


def test_a_lot_is_traced_across_two_sites(world: World) -> None:
    client, store, stored = world
    store.put_recall(Recall(lot="LOT-A", reason="sterility", recorded_at=NOW))
    # The recall is checked against devices already in use: both LOT-A patches get tickets.
    from service.sla import SlaConfig
    from service.traceability.lots import check_lots

    opened = check_lots(store, NOW, SlaConfig())
    assert sorted(t.device_id for t in opened) == ["k2", "k:1"]
    assert check_lots(store, NOW, SlaConfig()) == []
    trace = client.get("/trace/lot", params={"lot": "LOT-A"}, headers=auth(ADMIN)).json()
    assert [d["id"] for d in trace["devices"]] == ["k2", "k:1"]
    assert {p["id"] for p in trace["patients"]} == {"p1", "p2"}
    spans = {s["device_id"]: s for s in trace["spans"]}
    for device_id in ("k2", "k:1"):
        mine = [r.ts_us for r in stored if r.device_id == device_id]
        assert (spans[device_id]["first_us"], spans[device_id]["last_us"]) == (min(mine), max(mine))
        assert spans[device_id]["count"] == len(mine)
    assert len(trace["tickets"]) == 2
    mine = client.get("/trace/lot", params={"lot": "LOT-A"}, headers=auth(H1)).json()
    assert [d["id"] for d in mine["devices"]] == ["k:1"]
    text = client.get(
        "/trace/lot", params={"lot": "LOT-A", "format": "csv"}, headers=auth(ADMIN)
    ).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["site_id"], r["hospital"], r["patient"]) for r in rows] == [
        ("s2", "Hospital Two", "p2"),
        ("s1", "Hospital One", "p1"),
    ]
    assert all(r["tickets"] and r["open_tickets"] == "1" for r in rows)
    bundle = client.get(
        "/trace/lot", params={"lot": "LOT-A", "format": "fhir"}, headers=auth(ADMIN)
    ).json()
    validate(bundle)
    for entry in bundle["entry"]:
        validate(entry["resource"])
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds == ["Device"] * 2 + ["Observation"] * 2 + ["Patient"] * 2 + ["Task"] * 2
    assert client.get("/trace/lot", params={"lot": "LOT-A"}, headers=auth(P1)).status_code == 403


def _gtin14(body: str) -> str:
    """``body`` (13 digits) with its GS1 check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


# Lot and serial are GS1 AI 10/21 (up to 20 characters of CSET 82); parentheses are left out
# because the human-readable form cannot tell them from an AI.
_field = st.text(alphabet=string.ascii_letters + string.digits + "-./_", min_size=1, max_size=20)


@settings(max_examples=100)
@given(
    body=st.from_regex(r"[0-9]{13}", fullmatch=True),
    expiry=st.none() | st.dates(date(2000, 1, 1), date(2049, 12, 31)),
    lot=st.none() | _field,
    serial=st.none() | _field,
    symbology=st.sampled_from(["", "]d2", "]C1", "]Q3", GS]),
)
def test_any_udi_reads_back_from_each_encoding(
    body: str, expiry: date | None, lot: str | None, serial: str | None, symbology: str
) -> None:
    gtin = _gtin14(body)
    fields = [("01", gtin)]
    fields += [("17", f"{expiry:%y%m%d}")] if expiry else []
    fields += [(ai, v) for ai, v in (("10", lot), ("21", serial)) if v]
    hri = "".join(f"({ai}){v}" for ai, v in fields)
    raw = symbology + "".join(
        f"{ai}{v}{GS if ai in ('10', '21') else ''}" for ai, v in fields
    ).rstrip(GS)
    for text in (hri, raw):
        udi = parse_udi(text)
        assert (udi.gtin, udi.expiry, udi.lot, udi.serial) == (
            gtin,
            expiry,
            lot or "",
            serial or "",
        )
        assert udi.hri == hri
