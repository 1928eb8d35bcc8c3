"""C reference firmware == Python encoders == firmware_stubs/vectors.json, byte for byte."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from contract.ble import (
    BTHomeObject,
    BTHomeValue,
    GattDateTime,
    MedFloat,
    MedValue,
    Special,
    TemperatureMeasurement,
    TemperatureType,
    decode_bthome_adv,
    decode_float,
    decode_patch_frame,
    decode_sfloat,
    decode_temperature_measurement,
    encode_bthome_adv,
    encode_float,
    encode_patch_frame,
    encode_sfloat,
    encode_temperature_measurement,
)
from contract.ble.bthome import _SPECS
from contract.ble.frame import PatchFlags, PatchFrame

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_stubs"
VECTORS: dict[str, Any] = json.loads((FIRMWARE / "vectors.json").read_text())


@pytest.fixture(scope="session")
def vectors_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the C tool out of tree; skip (not fail) where there is no C toolchain."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("no make/cc to build the C reference")
    build = tmp_path_factory.mktemp("firmware_build")
    proc = subprocess.run(
        ["make", "-C", str(FIRMWARE), f"BUILD={build}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 and "openssl" in proc.stderr.lower():
        pytest.skip(f"OpenSSL headers/libcrypto missing: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return build / "vectors_tool"


def run_tool(tool: Path, *args: object) -> str:
    """The tool's hex output for one vector."""
    proc = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _ids(kind: str) -> list[str]:
    return [v["name"] for v in VECTORS[kind]]


def _load_vector_maker() -> ModuleType:
    # firmware_stubs/ is not a package; the generator's own reading of a raw vector is reused so
    # the test and the vectors can never disagree on what a raw field means.
    spec = importlib.util.spec_from_file_location(
        "make_vectors", Path(__file__).resolve().parents[2] / "firmware_stubs" / "make_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


frame_of: Callable[[dict[str, Any]], PatchFrame] = _load_vector_maker().frame_from_raw


@pytest.mark.parametrize("v", VECTORS["frame"], ids=_ids("frame"))
def test_frame(v: dict[str, Any], vectors_tool: Path) -> None:
    key, addr = bytes.fromhex(v["key"]), bytes.fromhex(v["address"])
    c_hex = run_tool(
        vectors_tool,
        "frame",
        v["key"],
        v["address"],
        v["frame_flags"],
        v["counter"],
        v["ph_centi"],
        v["wound_temp_centi"],
        v["skin_temp_centi"],
        v["exudate_half_pct"],
        v["battery_pct"],
        v["status"],
    )
    py_hex = encode_patch_frame(frame_of(v), key, addr).hex()
    assert c_hex == py_hex == v["expected"]
    assert decode_patch_frame(bytes.fromhex(v["expected"]), key, addr) == frame_of(v)


def test_every_status_flag_has_a_vector() -> None:
    covered = 0
    for v in VECTORS["frame"]:
        covered |= v["status"]
    assert covered == sum(PatchFlags)


@pytest.mark.parametrize("v", VECTORS["bthome"], ids=_ids("bthome"))
def test_bthome(v: dict[str, Any], vectors_tool: Path) -> None:
    objects = [f"{i}:{raw}" for i, raw in v["objects"]]
    c_hex = run_tool(
        vectors_tool,
        "bthome",
        v["key"] or "-",
        v["mac"] or "-",
        v["counter"] or 0,
        v["options"],
        *objects,
    )
    values = [
        BTHomeValue(BTHomeObject(i), raw / _SPECS[BTHomeObject(i)].scale) for i, raw in v["objects"]
    ]
    key = bytes.fromhex(v["key"]) if v["key"] else None
    mac = bytes.fromhex(v["mac"]) if v["mac"] else None
    py_hex = encode_bthome_adv(
        values,
        mac=mac,
        key=key,
        counter=v["counter"],
        trigger_based=bool(v["options"] & 4),
        include_mac=bool(v["options"] & 2),
    ).hex()
    assert c_hex == py_hex == v["expected"]
    advert = decode_bthome_adv(bytes.fromhex(v["expected"]), mac=mac, key=key)
    assert list(advert.values) == values and advert.counter == v["counter"]


def test_bthome_io_published_example() -> None:
    (example,) = [v for v in VECTORS["bthome"] if v["name"] == "bthome_io_example_encrypted"]
    assert example["expected"] == "41e445f3c9962b332211006c7c4519"


def _number(v: dict[str, Any]) -> MedValue:
    return Special(v["special"]) if "special" in v else MedFloat(v["mantissa"], v["exponent"])


@pytest.mark.parametrize("kind", ["float", "sfloat"])
def test_numbers(kind: str, vectors_tool: Path) -> None:
    encode, decode = (
        (encode_float, decode_float) if kind == "float" else (encode_sfloat, decode_sfloat)
    )
    for v in VECTORS[kind]:
        args = (
            [f"{kind}-special", v["special"]]
            if "special" in v
            else [kind, v["mantissa"], v["exponent"]]
        )
        assert run_tool(vectors_tool, *args) == encode(_number(v)).hex() == v["expected"], v
        assert decode(bytes.fromhex(v["expected"])) == _number(v)


@pytest.mark.parametrize(
    "v", VECTORS["temperature_measurement"], ids=_ids("temperature_measurement")
)
def test_temperature_measurement(v: dict[str, Any], vectors_tool: Path) -> None:
    measurement = TemperatureMeasurement(
        _number(v["value"]),
        v["fahrenheit"],
        GattDateTime(*v["time"]) if v["time"] else None,
        TemperatureType(v["type"]) if v["type"] else None,
    )
    number = v["value"]
    float_args = (
        ["float-special", number["special"]]
        if "special" in number
        else ["float", number["mantissa"], number["exponent"]]
    )
    word = int.from_bytes(bytes.fromhex(run_tool(vectors_tool, *float_args)), "little")
    flags = int(v["fahrenheit"]) | (2 if v["time"] else 0) | (4 if v["type"] else 0)
    c_hex = run_tool(vectors_tool, "htm", word, flags, *(v["time"] or [0] * 6), v["type"] or 0)
    assert c_hex == encode_temperature_measurement(measurement).hex() == v["expected"]
    assert decode_temperature_measurement(bytes.fromhex(v["expected"])) == measurement


def test_c_rejects_out_of_range(vectors_tool: Path) -> None:
    bad = [
        ["frame", "00" * 16, "00" * 6, 0, 1, 1401, 0, 0, 0, 0, 0],
        ["frame", "00" * 16, "00" * 6, 2, 1, 0, 0, 0, 0, 0, 0],
        ["float", 8388606, 0],
        ["sfloat", 2046, 0],
        ["bthome", "-", "-", 0, 0, "1:256"],
        ["bthome", "-", "-", 0, 0, "2:1", "1:1"],
    ]
    for args in bad:
        proc = subprocess.run(
            [str(vectors_tool), *map(str, args)], capture_output=True, check=False
        )
        assert proc.returncode == 1, args
