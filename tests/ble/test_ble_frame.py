"""Patch measurement frame: round trips, authentication, and random bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.ble import (
    BleAuthError,
    BleDecodeError,
    BleEncodeError,
    FrameFlags,
    PatchFlags,
    PatchFrame,
    decode_patch_frame,
    encode_patch_frame,
)
from contract.ble._ccm import seal
from contract.ble.frame import FRAME_LEN, frame_nonce

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
ADDR = bytes.fromhex("5448e68f80a5")


def _opt(values: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), values)


FRAMES = st.builds(
    PatchFrame,
    counter=st.integers(0, 0xFFFF_FFFF),
    wound_ph=_opt(st.integers(0, 1400).map(lambda r: r / 100)),
    wound_temp=_opt(st.integers(-32767, 32767).map(lambda r: r / 100)),
    skin_temp=_opt(st.integers(-32767, 32767).map(lambda r: r / 100)),
    exudate=_opt(st.integers(0, 200).map(lambda r: r / 2)),
    battery=st.one_of(st.none(), st.integers(0, 100)),
    status=st.integers(0, 0x7F).map(PatchFlags),
    frame_flags=st.sampled_from([FrameFlags(0), FrameFlags.BACKFILL]),
)
SAMPLE = PatchFrame(42, 7.12, 33.5, 32.9, 20.5, 87, PatchFlags.LOW_BATTERY)


@given(FRAMES, st.binary(min_size=16, max_size=16), st.binary(min_size=6, max_size=6))
def test_round_trip(frame: PatchFrame, key: bytes, address: bytes) -> None:
    data = encode_patch_frame(frame, key, address)
    assert len(data) == FRAME_LEN
    assert decode_patch_frame(data, key, address) == frame


def test_encoder_rounds_to_resolution() -> None:
    frame = PatchFrame(1, 7.005, 33.456, None, 20.3, 50)
    decoded = decode_patch_frame(encode_patch_frame(frame, KEY, ADDR), KEY, ADDR)
    assert (decoded.wound_ph, decoded.wound_temp, decoded.exudate) == (7.01, 33.46, 20.5)


@given(st.integers(0, FRAME_LEN * 8 - 1))
def test_any_flipped_bit_fails(bit: int) -> None:
    data = bytearray(encode_patch_frame(SAMPLE, KEY, ADDR))
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BleDecodeError):
        decode_patch_frame(bytes(data), KEY, ADDR)


@given(st.integers(6 * 8, FRAME_LEN * 8 - 1))
def test_flipped_body_or_tag_bit_is_an_auth_error(bit: int) -> None:
    data = bytearray(encode_patch_frame(SAMPLE, KEY, ADDR))
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BleAuthError):
        decode_patch_frame(bytes(data), KEY, ADDR)


def test_flipped_counter_is_an_auth_error() -> None:
    data = bytearray(encode_patch_frame(SAMPLE, KEY, ADDR))
    data[2] ^= 0x01
    with pytest.raises(BleAuthError):
        decode_patch_frame(bytes(data), KEY, ADDR)


def test_wrong_key_and_wrong_address_are_auth_errors() -> None:
    data = encode_patch_frame(SAMPLE, KEY, ADDR)
    with pytest.raises(BleAuthError):
        decode_patch_frame(data, bytes(16), ADDR)
    with pytest.raises(BleAuthError):
        decode_patch_frame(data, KEY, bytes(6))


@pytest.mark.parametrize(
    "frame",
    [
        PatchFrame(-1, None, None, None, None, None),
        PatchFrame(1 << 32, None, None, None, None, None),
        PatchFrame(1, 14.01, None, None, None, None),
        PatchFrame(1, None, 327.68, None, None, None),
        PatchFrame(1, None, None, -327.68, None, None),
        PatchFrame(1, None, None, None, 100.5, None),
        PatchFrame(1, None, None, None, None, 101),
        PatchFrame(1, float("nan"), None, None, None, None),
        PatchFrame(1, None, None, None, None, None, PatchFlags(0x80)),
    ],
)
def test_encoder_rejects_unrepresentable(frame: PatchFrame) -> None:
    with pytest.raises(BleEncodeError):
        encode_patch_frame(frame, KEY, ADDR)


def test_bad_key_or_address_size() -> None:
    data = encode_patch_frame(SAMPLE, KEY, ADDR)
    with pytest.raises(BleDecodeError):
        decode_patch_frame(data, KEY[:15], ADDR)
    with pytest.raises(BleDecodeError):
        decode_patch_frame(data, KEY, ADDR[:5])
    with pytest.raises(BleEncodeError):
        encode_patch_frame(SAMPLE, KEY + b"x", ADDR)


@given(st.binary(max_size=40))
def test_fuzz(data: bytes) -> None:
    try:
        frame = decode_patch_frame(data, KEY, ADDR)
    except BleDecodeError:
        return
    assert isinstance(frame, PatchFrame)


@given(st.binary(min_size=17, max_size=17))
def test_fuzz_well_formed_header(tail: bytes) -> None:
    # Past the length and version checks, random bytes must still fail only as BleAuthError.
    with pytest.raises(BleAuthError):
        decode_patch_frame(b"\x01\x00" + tail + bytes(4), KEY, ADDR)


def test_authentic_but_out_of_range_body_is_a_decode_error() -> None:
    header = bytes([1, 0]) + (5).to_bytes(4, "little")
    body = (1401).to_bytes(2, "little") + bytes(7)
    data = header + seal(KEY, frame_nonce(ADDR, 5), body, header, 8)
    with pytest.raises(BleDecodeError) as caught:
        decode_patch_frame(data, KEY, ADDR)
    assert not isinstance(caught.value, BleAuthError)
