"""The poison corpus: hostile equipment messages and uplink batches, and what must become of each.

Every case ends as a stored reading or a dead letter with its reason, and no process exits.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from infra.time_us import now_us

DAY_US = 86_400_000_000
YEAR_10000_US = 253_402_300_800_000_000
_BATCH_SEQS = itertools.count(1)


@dataclass(frozen=True)
class Case:
    """One poison input and its expected fate.

    ``gateway_letter``/``ingest_letter``: a fragment the reason of a new dead letter there must
    contain. ``stored``: (device, metric) readings that must be stored despite the poison.
    """

    name: str
    topic_device: str  # the device id the equipment topic names (uplink cases: the gateway id)
    payload: bytes
    gateway_letter: str | None = None
    ingest_letter: str | None = None
    stored: tuple[tuple[str, str], ...] = ()
    uplink: bool = False  # published straight to the uplink batch topic, bypassing the gateway
    xfail: str | None = None  # why the case cannot pass yet, naming what must change
    never_stored: tuple[str, ...] = field(default=())  # devices nothing may be stored for


def message(device: str, **fields: Any) -> dict[str, Any]:
    """A valid ultrasound message of ``device`` now, with ``fields`` overriding."""
    doc: dict[str, Any] = {
        "device_id": device,
        "kind": "ultrasound",
        "seq": 1,
        "ts_us": now_us(),
        "metrics": {"mains_voltage": 230.0},
    }
    return {**doc, **fields}


def dumps(doc: dict[str, Any]) -> bytes:
    """JSON bytes, with NaN/Infinity literals allowed (they are part of the corpus)."""
    return json.dumps(doc).encode()


def batch(gateway_id: str, /, **columns: Any) -> bytes:
    """A one-reading wire batch of ``gateway_id``, with ``columns`` overriding."""
    doc: dict[str, Any] = {
        "v": 1,
        "gateway_id": gateway_id,
        "batch_seq": next(_BATCH_SEQS),  # a repeated one would be skipped as a duplicate
        "device_id": ["u-dev"],
        "metric": ["mains_voltage"],
        "value": [230.0],
        "unit": ["V"],
        "ts_us": [now_us()],
        "seq": [1],
    }
    return json.dumps({**doc, **columns}).encode()


def _dead(name: str, payload: dict[str, Any] | bytes, fragment: str, device: str = "") -> Case:
    device = device or name
    raw = payload if isinstance(payload, bytes) else dumps(payload)
    return Case(name, device, raw, gateway_letter=fragment, never_stored=(device,))


def equipment_cases() -> list[Case]:
    """Poison published as equipment telemetry on the site broker."""
    now = now_us()
    nan = dumps(message("p-nan", metrics={"mains_voltage": "X"})).replace(b'"X"', b"NaN")
    inf = dumps(message("p-inf", metrics={"mains_voltage": "X"})).replace(b'"X"', b"Infinity")
    surrogate = dumps(message("p-sur")).replace(b'"p-sur"', b'"p-\\ud800"')
    duplicate = dumps(message("p-dup")).replace(b'"kind"', b'"device_id": "p-dup2", "kind"')
    return [
        _dead("p-seq", message("p-seq", seq=2**63), "64-bit"),
        _dead("p-ts", message("p-ts", ts_us=2**63), "64-bit"),
        _dead("p-y10k", message("p-y10k", ts_us=YEAR_10000_US), "year 9999"),
        _dead("p-sec", message("p-sec", ts_us=now // 1_000_000), "looks like seconds"),
        _dead("p-ms", message("p-ms", ts_us=now // 1_000), "looks like milliseconds"),
        _dead("p-ns", message("p-ns", ts_us=now * 1_000), "looks like nanoseconds"),
        _dead("p-future", message("p-future", ts_us=now + 3_600 * 10**6), "in the future"),
        _dead("p-old", message("p-old", ts_us=now - 500 * DAY_US), "retention horizon"),
        _dead("p-nul", message("p\x00nul"), "U+0000"),
        _dead("p-nl", message("p-nl\n"), "U+000A"),
        _dead("p-esc", message("p-\x1b[2J"), "U+001B"),
        _dead("p-slash", message("p/slash"), "'/'"),
        _dead("p-sur", surrogate, "Invalid JSON"),
        _dead("p-big", message("p-big", pad="x" * 1_000_000), "exceeds"),
        _dead("p-deep", b"[" * 10_000 + b"]" * 10_000, "Invalid JSON"),
        _dead("p-nan", nan, "not finite"),
        _dead("p-inf", inf, "not finite"),
        _dead("p-bool", message("p-bool", metrics={"error_code": True}), "valid number"),
        _dead("p-str", message("p-str", metrics={"mains_voltage": "230.6"}), "valid number"),
        _dead("p-float-seq", message("p-float-seq", seq=15.0), "valid integer"),
        _dead("p-dup", duplicate, "duplicate keys"),
        _dead("p-empty", message("p-empty", metrics={}), "metrics is empty"),
        _dead("p-extra", message("p-extra", firmware="1.2"), "Extra inputs"),
        _dead("p-garbage", b"\xff\xfe not json at all", "Invalid JSON"),
        _dead("p-topic", message("p-other"), "topic names device 'p-topic'"),
        Case(
            "p-unknown",
            "p-unknown",
            dumps(message("p-unknown", metrics={"mains_voltage": 229.0, "mains_volts": 1.0})),
            gateway_letter="unknown metric 'mains_volts'",
            stored=(("p-unknown", "mains_voltage"),),
        ),
        Case(
            "p-kind",
            "p-kind",
            dumps(message("p-kind", metrics={"ng_voltage": 0.4, "wound_ph": 7.0})),
            gateway_letter="is not one a ultrasound reports",
            stored=(("p-kind", "ng_voltage"),),
        ),
    ]


def uplink_cases() -> list[Case]:
    """Malformed batches published straight to an uplink batch topic: ingest dead-letters them."""
    now = now_us()
    surrogate = batch("gw-rogue").replace(b'"u-dev"', b'"u-\\ud800"')
    return [
        _rogue("u-trunc", b'{"v": 1, "gateway_id": "gw-rogue"', "Invalid JSON"),
        _rogue("u-seq", batch("gw-rogue", seq=[2**63]), "64-bit"),
        _rogue("u-nul", batch("gw-rogue", device_id=["u\x00dev"]), "U+0000"),
        _rogue("u-y10k", batch("gw-rogue", ts_us=[YEAR_10000_US]), "year 9999"),
        _rogue("u-sur", surrogate, "Invalid JSON"),
        _rogue("u-gwid", batch("gw-rogue", gateway_id="gw\x00"), "U+0000"),
        _rogue(
            "u-future",
            batch("gw-rogue", device_id=["u-future"], ts_us=[now + 3_600 * 10**6]),
            "in the future",
        ),
        _rogue("u-mismatch", batch("gw-other", device_id=["u-mismatch"]), "gw-other"),
    ]


def _rogue(name: str, payload: bytes, fragment: str, xfail: str | None = None) -> Case:
    """A batch a rogue client publishes on gateway gw-rogue's uplink topic."""
    return Case(
        name,
        "gw-rogue",
        payload,
        ingest_letter=fragment,
        uplink=True,
        xfail=xfail,
        never_stored=(name,),
    )
