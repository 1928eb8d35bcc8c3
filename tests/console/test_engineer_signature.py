"""The signature decoder and the action parser on hostile input: only their own refusals."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.console import engineer_signature
from service.console.engineer_actions import ACTIONS, ActionRefused, event_for
from service.console.engineer_signature import PNG_MAGIC, PREFIX, BadSignature, decode
from tests.console.test_engineer_world import data_url, signature_png

FORM_FIELDS = ("note", "fault", "resolution", "parts", "signer", "signature")
FORM_FIELDS += ("signature_mode", "consent")  # a typed signature's


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300).map(lambda b: PREFIX + base64.b64encode(b).decode()),
        st.binary(max_size=300).map(lambda b: PREFIX + base64.b64encode(PNG_MAGIC + b).decode()),
    )
)
def test_any_posted_value_decodes_or_is_refused_with_a_reason(value: str) -> None:
    try:
        png = decode(value)
    except BadSignature as refused:
        assert refused.message
    else:
        assert png.startswith(PNG_MAGIC)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([*ACTIONS, "explode", ""]),
    st.dictionaries(
        st.sampled_from(FORM_FIELDS),
        st.text(max_size=200),
    ),
)
def test_any_form_is_an_event_or_a_422(action: str, form: dict[str, str]) -> None:
    try:
        event_for(action, form)
    except ActionRefused as refused:
        assert refused.status == 422 and refused.text()


def test_a_drawn_signature_is_accepted_and_hashed() -> None:
    png = signature_png()
    assert decode(data_url(png)) == png
    record = engineer_signature.image_record(png)
    assert base64.b64decode(record["png_base64"]) == png
    assert record["png_sha256"] == engineer_signature.digest(png)


@pytest.mark.parametrize(
    "png",
    [
        signature_png(ink=False),
        signature_png(width=1, height=1),
        signature_png(width=3000, height=5),
    ],
)
def test_blank_tiny_or_huge_pads_are_refused(png: bytes) -> None:
    with pytest.raises(BadSignature):
        decode(data_url(png))


def test_an_oversized_post_is_refused_before_decoding() -> None:
    with pytest.raises(BadSignature, match="larger than"):
        decode(PREFIX + "A" * (engineer_signature.MAX_BYTES * 2))
