"""The confirmation codec: pure, no I/O; bad payloads are ContractErrors."""

from __future__ import annotations

import json

import pytest
from aiomqtt import Topic
from hypothesis import given
from hypothesis import strategies as st

from contract import Confirmation, ContractError, decode_confirmation, encode_confirmation
from contract.confirm import MAX_CONFIRMED_SEQS, split_confirmation
from contract.topics import batch_subscription, confirm_topic


@given(
    gateway_id=st.text(min_size=1, max_size=128),
    seqs=st.lists(st.integers(0, 2**62), min_size=1, max_size=200),
)
def test_roundtrip_sorts_and_deduplicates(gateway_id: str, seqs: list[int]) -> None:
    confirmation = Confirmation.of(gateway_id, seqs)
    assert confirmation.batch_seqs == tuple(sorted(set(seqs)))
    assert decode_confirmation(encode_confirmation(confirmation)) == confirmation


def test_wire_layout_is_versioned_json() -> None:
    payload = encode_confirmation(Confirmation.of("gw-1", [9, 7, 8, 7]))
    assert json.loads(payload) == {"v": 1, "gateway_id": "gw-1", "batch_seqs": [7, 8, 9]}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00not json",
        b"[]",
        b'{"v": 2, "gateway_id": "gw", "batch_seqs": [1]}',  # unknown version
        b'{"gateway_id": "gw", "batch_seqs": [1]}',
        b'{"v": 1, "gateway_id": "", "batch_seqs": [1]}',
        b'{"v": 1, "gateway_id": "gw", "batch_seqs": []}',  # confirms nothing
        b'{"v": 1, "gateway_id": "gw", "batch_seqs": [-1]}',
        b'{"v": 1, "gateway_id": "gw", "batch_seqs": ["1"]}',  # strict: no coercion
        b'{"v": 1, "gateway_id": "gw", "batch_seqs": [1.0]}',
        b'{"v": 1, "gateway_id": 7, "batch_seqs": [1]}',
        b'{"v": 1, "gateway_id": "gw", "batch_seqs": [1], "extra": true}',
        b'{"v": 1, "gateway_id": "gw", "batch_seqs": [1]' + b" " * 300_000 + b"}",  # too big
    ],
)
def test_bad_payloads_raise_contract_error(payload: bytes) -> None:
    with pytest.raises(ContractError):
        decode_confirmation(payload)


def test_too_many_seqs_are_split_not_rejected() -> None:
    big = Confirmation.of("gw-1", range(2 * MAX_CONFIRMED_SEQS + 5))
    with pytest.raises(ContractError):
        encode_confirmation(big)
    pieces = split_confirmation(big)
    assert [len(p.batch_seqs) for p in pieces] == [MAX_CONFIRMED_SEQS, MAX_CONFIRMED_SEQS, 5]
    decoded = [decode_confirmation(encode_confirmation(p)) for p in pieces]
    assert tuple(s for p in decoded for s in p.batch_seqs) == big.batch_seqs
    with pytest.raises(ContractError):
        encode_confirmation(Confirmation("gw-1", ()))


def test_confirm_topic_is_per_gateway_and_outside_the_batch_subscription() -> None:
    assert confirm_topic("gw-7") == "vigil/v1/gateways/gw-7/confirms"
    # Ingest must never consume confirmations as batches.
    assert not Topic(confirm_topic("gw-7")).matches(batch_subscription())
