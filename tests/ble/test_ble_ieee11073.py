"""IEEE-11073 FLOAT and SFLOAT: round trips, special values, and random bytes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.ble import (
    BleDecodeError,
    BleEncodeError,
    MedFloat,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    quantize,
    to_float,
)

FLOATS = st.builds(MedFloat, st.integers(-8388605, 8388605), st.integers(-128, 127))
SFLOATS = st.builds(MedFloat, st.integers(-2045, 2045), st.integers(-8, 7))


@given(st.one_of(FLOATS, st.sampled_from(Special)))
def test_float_round_trip(value: MedFloat | Special) -> None:
    assert decode_float(encode_float(value)) == value


@given(st.one_of(SFLOATS, st.sampled_from(Special)))
def test_sfloat_round_trip(value: MedFloat | Special) -> None:
    assert decode_sfloat(encode_sfloat(value)) == value


@pytest.mark.parametrize(
    ("word", "special"),
    [
        (0x007FFFFF, Special.NAN),
        (0x00800000, Special.NRES),
        (0x007FFFFE, Special.POSITIVE_INFINITY),
        (0x00800002, Special.NEGATIVE_INFINITY),
        (0x00800001, Special.RESERVED),
    ],
)
def test_float_special_words(word: int, special: Special) -> None:
    assert decode_float(word.to_bytes(4, "little")) is special
    assert encode_float(special) == word.to_bytes(4, "little")


@pytest.mark.parametrize(
    ("word", "special"),
    [
        (0x07FF, Special.NAN),
        (0x0800, Special.NRES),
        (0x07FE, Special.POSITIVE_INFINITY),
        (0x0802, Special.NEGATIVE_INFINITY),
        (0x0801, Special.RESERVED),
    ],
)
def test_sfloat_special_words(word: int, special: Special) -> None:
    assert decode_sfloat(word.to_bytes(2, "little")) is special


def test_to_float() -> None:
    assert float(decode_float(bytes.fromhex("7a0e00fe"))) == 37.06  # type: ignore[arg-type]
    assert to_float(MedFloat(-5, 2)) == -500.0
    assert math.isnan(to_float(Special.NRES))
    assert to_float(Special.NEGATIVE_INFINITY) == -math.inf


def test_quantize() -> None:
    assert quantize(36.85, -1) == MedFloat(369, -1)
    assert quantize(-0.005, -2) == MedFloat(-1, -2)
    assert quantize(math.inf, -2) is Special.POSITIVE_INFINITY
    assert quantize(math.nan, 0) is Special.NAN


def test_special_mantissa_with_exponent_is_rejected() -> None:
    with pytest.raises(BleDecodeError):
        decode_float(bytes.fromhex("ffff7f01"))


@pytest.mark.parametrize("value", [MedFloat(8388606, 0), MedFloat(0, 128), MedFloat(0, -129)])
def test_float_encode_rejects_out_of_range(value: MedFloat) -> None:
    with pytest.raises(BleEncodeError):
        encode_float(value)


@given(st.binary(max_size=6))
def test_float_fuzz(data: bytes) -> None:
    for decode, encode in ((decode_float, encode_float), (decode_sfloat, encode_sfloat)):
        try:
            value = decode(data)
        except BleDecodeError:
            continue
        assert encode(value) == data  # every decodable word is canonical
