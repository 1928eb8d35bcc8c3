"""GS1 UDI barcodes: (01) GTIN, (17) expiry, (10) lot and (21) serial, parsed with biip.

A scanner hands over the element strings with FNC1 as the ASCII group separator (GS, 0x1D),
often behind a symbology identifier such as ``]d2`` (GS1 DataMatrix) or ``]C1`` (GS1-128);
a label prints them in parentheses, ``(01)…(17)…``; a GS1 Digital Link URI carries them in a
path. Where GS cannot be typed (a shell), ``<GS>``, ``{GS}``, ``\\x1d`` and ``^]`` stand for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import biip
from biip.gs1_element_strings import GS1ElementStrings
from biip.gs1_messages import GS1Message

GS = "\x1d"
# Typed stand-ins for the group separator (a shell cannot type 0x1D).
_GS_SPELLINGS = ("<GS>", "{GS}", "\\x1d", "\\x1D", "\\u001d", "\\u001D", "^]", "␝")
MAX_BARCODE_CHARS = 512


class UdiError(ValueError):
    """The text is not a GS1 UDI this system can use; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Udi:
    """The production identifiers of one GS1 UDI, and its human-readable form."""

    gtin: str
    expiry: date | None
    lot: str
    serial: str
    hri: str


def normalised(text: str) -> str:
    """``text`` with the typed group-separator spellings turned into GS and outer space cut."""
    for spelling in _GS_SPELLINGS:
        text = text.replace(spelling, GS)
    return text.strip(" \t\r\n")


def _message(text: str) -> GS1ElementStrings:
    """The element strings of ``text``: parenthesised HRI, raw element strings or a URI."""
    # biip raises more than ParseError on hostile input (IndexError for a lone "]"), and no
    # input may crash a caller: any failure of the parser is a barcode that cannot be read.
    try:
        if text.startswith("("):
            return GS1Message.parse_hri(text).element_strings
        result = biip.parse(text)
    except Exception as exc:
        raise UdiError(f"not a GS1 barcode: {_reason(exc)}") from None
    if result.gs1_message is not None:
        return result.gs1_message.element_strings
    if result.gs1_digital_link_uri is not None:
        return result.gs1_digital_link_uri.element_strings
    reason = result.gs1_message_error or "no GS1 element strings found"
    raise UdiError(f"not a GS1 barcode: {reason}")


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, biip.ParseError) else f"unreadable ({type(exc).__name__})"


def parse_udi(text: str) -> Udi:
    """The UDI in scanned or typed barcode ``text``; UdiError if it is none, or lacks a GTIN."""
    if not isinstance(text, str) or not text.strip():
        raise UdiError("empty barcode")
    if len(text) > MAX_BARCODE_CHARS:
        raise UdiError(f"barcode longer than {MAX_BARCODE_CHARS} characters")
    strings = _message(normalised(text))
    gtin = strings.get(ai="01")
    if gtin is None:
        raise UdiError("the barcode has no (01) GTIN, so it is no UDI")
    if gtin.gtin is None:
        raise UdiError(f"(01) {gtin.value} is no valid GTIN: {gtin.gtin_error}")
    expiry = strings.get(ai="17")
    lot, serial = strings.get(ai="10"), strings.get(ai="21")
    hri = "".join(f"({s.ai.ai}){s.value}" for s in (gtin, expiry, lot, serial) if s is not None)
    return Udi(
        gtin=gtin.gtin.as_gtin_14(),
        expiry=expiry.date if expiry is not None else None,
        lot=lot.value if lot is not None else "",
        serial=serial.value if serial is not None else "",
        hri=hri,
    )
