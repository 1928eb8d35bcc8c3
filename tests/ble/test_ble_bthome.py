"""BTHome v2 adverts: the published example, round trips, authentication, random bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.ble import (
    BleAuthError,
    BleDecodeError,
    BleEncodeError,
    BTHomeAdvert,
    BTHomeObject,
    BTHomeValue,
    bthome_ad_structure,
    decode_bthome_adv,
    encode_bthome_adv,
)
from contract.ble.bthome import _SPECS

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = bytes.fromhex("5448e68f80a5")
EXAMPLE = [BTHomeValue(BTHomeObject.TEMPERATURE, 25.06), BTHomeValue(BTHomeObject.HUMIDITY, 50.55)]


@st.composite
def values(draw: st.DrawFn) -> BTHomeValue:
    object_id = draw(st.sampled_from(BTHomeObject))
    spec = _SPECS[object_id]
    bits = 8 * spec.length
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if spec.signed else (0, (1 << bits) - 1)
    return BTHomeValue(object_id, draw(st.integers(low, high)) / spec.scale)


def test_bthome_io_encryption_example() -> None:
    data = encode_bthome_adv(EXAMPLE, mac=MAC, key=KEY, counter=0x00112233)
    assert data.hex() == "41e445f3c9962b332211006c7c4519"
    advert = decode_bthome_adv(data, mac=MAC, key=KEY)
    assert advert.values == tuple(EXAMPLE)
    assert advert.counter == 0x00112233 and advert.encrypted


def test_plain_example() -> None:
    assert encode_bthome_adv(EXAMPLE).hex() == "4002ca0903bf13"
    advert = decode_bthome_adv(bytes.fromhex("40015d"))
    assert advert.get(BTHomeObject.BATTERY) == (93.0,)
    assert advert.counter is None and not advert.encrypted


def test_mac_included_example_from_another_implementation() -> None:
    advert = decode_bthome_adv(bytes.fromhex("43a5808fe64854f196c06ffb4900112233f08ecbde"), key=KEY)
    assert advert.mac == MAC
    assert advert.values == tuple(EXAMPLE)


@given(
    st.lists(values(), max_size=8),
    st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
    st.binary(min_size=6, max_size=6),
    st.integers(0, 0xFFFF_FFFF),
    st.booleans(),
    st.booleans(),
)
def test_round_trip(
    items: list[BTHomeValue],
    key: bytes | None,
    mac: bytes,
    counter: int,
    trigger: bool,
    include_mac: bool,
) -> None:
    data = encode_bthome_adv(
        items,
        mac=mac,
        key=key,
        counter=counter if key else None,
        trigger_based=trigger,
        include_mac=include_mac,
    )
    advert = decode_bthome_adv(data, mac=None if include_mac else mac, key=key)
    assert advert == BTHomeAdvert(
        values=tuple(sorted(items, key=lambda v: v.object_id)),
        encrypted=key is not None,
        counter=counter if key else None,
        trigger_based=trigger,
        mac=mac if include_mac else None,
    )


def test_objects_sorted_stably() -> None:
    items = [
        BTHomeValue(BTHomeObject.TEMPERATURE, 33.5),
        BTHomeValue(BTHomeObject.BATTERY, 80),
        BTHomeValue(BTHomeObject.TEMPERATURE, 32.9),
    ]
    advert = decode_bthome_adv(encode_bthome_adv(items))
    assert advert.get(BTHomeObject.TEMPERATURE) == (33.5, 32.9)
    assert advert.values[0].object_id is BTHomeObject.BATTERY


@given(st.integers(0, 14 * 8 - 1))
def test_tampering_is_an_auth_error(bit: int) -> None:
    data = bytearray(encode_bthome_adv(EXAMPLE, mac=MAC, key=KEY, counter=5))
    data[1 + bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BleAuthError):
        decode_bthome_adv(bytes(data), mac=MAC, key=KEY)


def test_tampered_device_info_is_rejected() -> None:
    data = bytearray(encode_bthome_adv(EXAMPLE, mac=MAC, key=KEY, counter=5))
    data[0] |= 0x04  # trigger-based bit is part of the nonce
    with pytest.raises(BleAuthError):
        decode_bthome_adv(bytes(data), mac=MAC, key=KEY)


def test_wrong_key_wrong_mac_missing_key_and_downgrade() -> None:
    data = encode_bthome_adv(EXAMPLE, mac=MAC, key=KEY, counter=5)
    with pytest.raises(BleAuthError):
        decode_bthome_adv(data, mac=MAC, key=bytes(16))
    with pytest.raises(BleAuthError):
        decode_bthome_adv(data, mac=bytes(6), key=KEY)
    with pytest.raises(BleAuthError):
        decode_bthome_adv(data, mac=MAC)
    with pytest.raises(BleAuthError):
        decode_bthome_adv(encode_bthome_adv(EXAMPLE), mac=MAC, key=KEY)
    with pytest.raises(BleDecodeError):
        decode_bthome_adv(data, key=KEY)  # no MAC to build the nonce


@pytest.mark.parametrize(
    "hexed",
    ["", "20", "6002ca09", "4002ca", "42a5808f", "41001122"],
)
def test_malformed(hexed: str) -> None:
    with pytest.raises(BleDecodeError):
        decode_bthome_adv(bytes.fromhex(hexed), mac=MAC, key=KEY if hexed[:2] == "41" else None)


def test_encoder_rejects_bad_input() -> None:
    with pytest.raises(BleEncodeError):
        encode_bthome_adv(EXAMPLE, key=KEY, counter=1)  # no MAC
    with pytest.raises(BleEncodeError):
        encode_bthome_adv(EXAMPLE, mac=MAC, key=KEY)  # no counter
    with pytest.raises(BleEncodeError):
        encode_bthome_adv(EXAMPLE, counter=1)  # plain adverts have none
    with pytest.raises(BleEncodeError):
        encode_bthome_adv([BTHomeValue(BTHomeObject.BATTERY, 256)])
    with pytest.raises(BleEncodeError):
        encode_bthome_adv(EXAMPLE, mac=MAC, key=KEY, counter=1 << 32)


def test_ad_structure() -> None:
    assert bthome_ad_structure(bytes.fromhex("4002ca09")).hex() == "0716d2fc4002ca09"
    with pytest.raises(BleEncodeError):
        bthome_ad_structure(bytes(28))


@given(st.binary(max_size=40), st.booleans())
def test_fuzz(data: bytes, with_key: bool) -> None:
    try:
        advert = decode_bthome_adv(data, mac=MAC, key=KEY if with_key else None)
    except BleDecodeError:
        return
    assert isinstance(advert, BTHomeAdvert)


@given(st.binary(max_size=30))
def test_fuzz_plain_payloads(payload: bytes) -> None:
    try:
        advert = decode_bthome_adv(b"\x40" + payload)
    except BleDecodeError:
        return
    ordered = list(advert.values) == sorted(advert.values, key=lambda v: v.object_id)
    if ordered and not advert.unknown:  # skipped objects are not re-encoded
        assert encode_bthome_adv(advert.values) == b"\x40" + payload


def test_an_undefined_object_id_ends_the_parse_without_refusing_the_advert() -> None:
    # Issue 16: the objects before it are kept, the id is listed (0xff: BTHome defines none).
    advert = decode_bthome_adv(bytes.fromhex("400150ff00"))
    assert [v.value for v in advert.values] == [80.0] and advert.unknown == (0xFF,)
