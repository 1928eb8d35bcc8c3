"""Regenerate vectors.json from the Python encoders.

Run `.venv/bin/python firmware_stubs/make_vectors.py` from the repository root.

The inputs below are the source of truth; expected bytes come from contract.ble and are checked
against the C encoders (tests/ble/test_firmware_vectors.py) and, for one BTHome vector, against
the published bthome.io example, so a regression on either side shows up as a diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contract.ble import (
    BTHomeObject,
    BTHomeValue,
    FrameFlags,
    GattDateTime,
    MedFloat,
    PatchFlags,
    PatchFrame,
    Special,
    TemperatureMeasurement,
    TemperatureType,
    encode_bthome_adv,
    encode_float,
    encode_patch_frame,
    encode_sfloat,
    encode_temperature_measurement,
)
from contract.ble.bthome import _SPECS

KEY = "231d39c1d7cc1ab1aee224cd096db932"
KEY2 = "00112233445566778899aabbccddeeff"
ADDR = "5448e68f80a5"
ADDR2 = "c0ffee000001"
NA = {"ph_centi": 0xFFFF, "wound_temp_centi": -0x8000, "skin_temp_centi": -0x8000,
      "exudate_half_pct": 0xFF, "battery_pct": 0xFF}
NORMAL = {"ph_centi": 712, "wound_temp_centi": 3350, "skin_temp_centi": 3290,
          "exudate_half_pct": 41, "battery_pct": 87}


def frame_from_raw(v: dict[str, Any]) -> PatchFrame:
    """The PatchFrame a raw-integer vector stands for."""
    return PatchFrame(
        counter=v["counter"],
        wound_ph=None if v["ph_centi"] == 0xFFFF else v["ph_centi"] / 100,
        wound_temp=None if v["wound_temp_centi"] == -0x8000 else v["wound_temp_centi"] / 100,
        skin_temp=None if v["skin_temp_centi"] == -0x8000 else v["skin_temp_centi"] / 100,
        exudate=None if v["exudate_half_pct"] == 0xFF else v["exudate_half_pct"] / 2,
        battery=None if v["battery_pct"] == 0xFF else v["battery_pct"],
        status=PatchFlags(v["status"]),
        frame_flags=FrameFlags(v["frame_flags"]),
    )


def frame_vectors() -> list[dict[str, Any]]:
    """Normal frames, every flag, the ends of every range, not-available codes."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("normal", {**NORMAL, "counter": 42, "status": 0, "frame_flags": 0}),
        ("counter_zero", {**NORMAL, "counter": 0, "status": 0, "frame_flags": 0}),
        ("counter_max", {**NORMAL, "counter": 0xFFFFFFFF, "status": 0, "frame_flags": 0}),
        ("backfill", {**NORMAL, "counter": 7, "status": 0, "frame_flags": 1}),
        ("all_flags", {**NORMAL, "counter": 8, "status": 0x7F, "frame_flags": 1}),
        ("all_not_available", {**NA, "counter": 9, "status": 0x02, "frame_flags": 0}),
        ("range_low", {"ph_centi": 0, "wound_temp_centi": -32767, "skin_temp_centi": -32767,
                       "exudate_half_pct": 0, "battery_pct": 0, "counter": 10, "status": 0,
                       "frame_flags": 0}),
        ("range_high", {"ph_centi": 1400, "wound_temp_centi": 32767, "skin_temp_centi": 32767,
                        "exudate_half_pct": 200, "battery_pct": 100, "counter": 11, "status": 0,
                        "frame_flags": 0}),
        ("negative_temps", {**NORMAL, "wound_temp_centi": -1, "skin_temp_centi": -2550,
                            "counter": 12, "status": 0, "frame_flags": 0}),
    ]
    cases += [
        (f"status_{str(flag.name).lower()}", {**NORMAL, "counter": 100 + i, "status": int(flag),
                                          "frame_flags": 0})
        for i, flag in enumerate(PatchFlags)
    ]
    out = []
    for i, (name, raw) in enumerate(cases):
        key, addr = (KEY2, ADDR2) if i % 3 == 2 else (KEY, ADDR)
        frame = frame_from_raw(raw)
        hexed = encode_patch_frame(frame, bytes.fromhex(key), bytes.fromhex(addr)).hex()
        out.append({"name": name, "key": key, "address": addr, **raw, "expected": hexed})
    return out


def bthome_vectors() -> list[dict[str, Any]]:
    """Plain and encrypted adverts, with and without the MAC, and the bthome.io example."""
    patch = [[0x00, 17], [0x01, 87], [0x02, 3350], [0x02, 3290], [0x14, 2050]]
    cases: list[dict[str, Any]] = [
        {"name": "bthome_io_example_encrypted", "key": KEY, "mac": ADDR, "counter": 0x00112233,
         "options": 0, "objects": [[0x02, 2506], [0x03, 5055]],
         "source": "bthome.io/encryption example: expect 41e445f3c9962b332211006c7c4519"},
        {"name": "plain_patch", "key": None, "mac": None, "counter": None, "options": 0,
         "objects": patch},
        {"name": "plain_trigger_based", "key": None, "mac": None, "counter": None, "options": 4,
         "objects": [[0x01, 5]]},
        {"name": "plain_mac_included", "key": None, "mac": ADDR, "counter": None, "options": 2,
         "objects": [[0x02, 2506], [0x03, 5055]]},
        {"name": "plain_extremes", "key": None, "mac": None, "counter": None, "options": 0,
         "objects": [[0x00, 255], [0x01, 0], [0x02, -32768], [0x02, 32767], [0x0C, 65535],
                     [0x2E, 100], [0x2F, 0], [0x45, -1]]},
        {"name": "encrypted_patch", "key": KEY, "mac": ADDR, "counter": 1, "options": 0,
         "objects": patch},
        {"name": "encrypted_mac_included", "key": KEY2, "mac": ADDR2, "counter": 77,
         "options": 2, "objects": patch},
        {"name": "encrypted_counter_max", "key": KEY, "mac": ADDR2, "counter": 0xFFFFFFFF,
         "options": 4, "objects": [[0x01, 100], [0x02, -1234]]},
    ]
    for case in cases:
        values = [BTHomeValue(BTHomeObject(i), raw / _SPECS[BTHomeObject(i)].scale)
                  for i, raw in case["objects"]]
        case["expected"] = encode_bthome_adv(
            values,
            mac=bytes.fromhex(case["mac"]) if case["mac"] else None,
            key=bytes.fromhex(case["key"]) if case["key"] else None,
            counter=case["counter"],
            trigger_based=bool(case["options"] & 4),
            include_mac=bool(case["options"] & 2),
        ).hex()
    return cases


def number_vectors(sfloat: bool) -> list[dict[str, Any]]:
    """Ordinary values, the ends of the mantissa and exponent ranges, every special value."""
    m_max, e_lo, e_hi = (2045, -8, 7) if sfloat else (8388605, -128, 127)
    pairs = [(370, -1), (-370, -1), (0, 0), (1, e_hi), (-1, e_lo), (m_max, 0), (-m_max, 0),
             (m_max, e_hi), (-m_max, e_lo), (365, -1)]
    encode = encode_sfloat if sfloat else encode_float
    out: list[dict[str, Any]] = [
        {"name": f"m{m}_e{e}", "mantissa": m, "exponent": e,
         "expected": encode(MedFloat(m, e)).hex()}
        for m, e in pairs
    ]
    out += [{"name": s.name.lower(), "special": s.value, "expected": encode(s).hex()}
            for s in Special]
    return out


def htm_vectors() -> list[dict[str, Any]]:
    """Temperature Measurements with each optional field and a special value."""
    cases: list[dict[str, Any]] = [
        {"name": "celsius_only", "value": {"mantissa": 3706, "exponent": -2}, "fahrenheit": False,
         "time": None, "type": None},
        {"name": "fahrenheit", "value": {"mantissa": 9871, "exponent": -2}, "fahrenheit": True,
         "time": None, "type": None},
        {"name": "with_time", "value": {"mantissa": 365, "exponent": -1}, "fahrenheit": False,
         "time": [2024, 2, 29, 13, 45, 7], "type": None},
        {"name": "with_type", "value": {"mantissa": 3390, "exponent": -2}, "fahrenheit": False,
         "time": None, "type": 2},
        {"name": "everything", "value": {"mantissa": 9871, "exponent": -2}, "fahrenheit": True,
         "time": [9999, 12, 31, 23, 59, 59], "type": 9},
        {"name": "unknown_date_nan", "value": {"special": "NaN"}, "fahrenheit": False,
         "time": [0, 0, 0, 0, 0, 0], "type": 1},
    ]
    for case in cases:
        v = case["value"]
        value = Special(v["special"]) if "special" in v else MedFloat(v["mantissa"], v["exponent"])
        case["expected"] = encode_temperature_measurement(TemperatureMeasurement(
            value,
            case["fahrenheit"],
            GattDateTime(*case["time"]) if case["time"] else None,
            TemperatureType(case["type"]) if case["type"] else None,
        )).hex()
    return cases


def main() -> None:
    """Write vectors.json next to this script."""
    doc = {
        "comment": "Shared BLE profile test vectors; regenerate with make_vectors.py",
        "frame": frame_vectors(),
        "bthome": bthome_vectors(),
        "float": number_vectors(sfloat=False),
        "sfloat": number_vectors(sfloat=True),
        "temperature_measurement": htm_vectors(),
    }
    path = Path(__file__).with_name("vectors.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
