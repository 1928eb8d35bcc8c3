"""The customer's signature: drawn on the canvas pad, or typed (keyboard only), checked first.

Drawn: the browser posts the canvas as a ``data:image/png;base64,…`` URL. It is hostile input
like any other: it must decode, be a real PNG of sane size, and carry ink (a blank pad is no
signature). Typed, for a customer who cannot or will not draw (keyboard or switch access, a
screen reader, a tremor): the signer's typed name and a ticked statement of intent become an
attestation — who, the statement they confirmed (and the language it was shown in), which
ticket, when — as canonical JSON. Either way the bytes' SHA-256 becomes the ticket's
e-signature (``lifecycle.SignOff`` hashes the bytes it gets) and the bytes themselves are kept
in the audit log next to the sign-off, so the chain covers them too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from datetime import datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

from service.console.i18n import N_

PREFIX = "data:image/png;base64,"
MAX_BYTES = 256 * 1024  # a 600×200 pad with a few strokes is 5-20 KiB
MAX_SIDE = 2000
MIN_INK_PIXELS = 20  # a tap or a stray dot is not a signature
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_ACTION = "signature_image"  # audit action of the row that keeps the PNG
TYPED_ACTION = "signature_typed"  # audit action of the row that keeps a typed attestation
# The statement a typed signature confirms (a msgid: shown in the console's language, and kept
# in the attestation as this source text with the language it was shown in).
TYPED_STATEMENT = N_(
    "I confirm the work recorded on this ticket, and I sign with my typed name instead of a"
    " drawn signature."
)


class BadSignature(ValueError):
    """The posted signature is not a usable drawn signature; the message (a msgid with
    ``%(name)s`` slots filled from ``variables``) says why."""

    def __init__(self, message: str, **variables: object) -> None:
        super().__init__(message % variables if variables else message)
        self.message = message
        self.variables = variables


def decode(data_url: str) -> bytes:
    """The PNG bytes of a canvas data URL; BadSignature when it is not a drawn PNG."""
    if not data_url:
        raise BadSignature("draw the signature on the pad first")
    if not data_url.startswith(PREFIX):
        raise BadSignature("the signature must be a PNG image from the pad")
    encoded = data_url[len(PREFIX) :]
    if len(encoded) > MAX_BYTES * 4 // 3 + 4:
        raise BadSignature("the signature image is larger than %(kib)s KiB", kib=MAX_BYTES // 1024)
    try:
        png = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("the signature image is not valid base64") from None
    if not png.startswith(PNG_MAGIC):
        raise BadSignature("the signature must be a PNG image from the pad")
    _check_image(png)
    return png


def _check_image(png: bytes) -> None:
    """BadSignature unless ``png`` decodes to a sane-sized image with some ink on it."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG":
                raise BadSignature("the signature must be a PNG image from the pad")
            width, height = image.size
            if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
                raise BadSignature(
                    "the signature image must be at most %(side)s px a side", side=MAX_SIDE
                )
            image.load()
            ink = _ink_pixels(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, BadSignature):
            raise
        raise BadSignature("the signature image cannot be read") from None
    if ink < MIN_INK_PIXELS:
        raise BadSignature("the signature pad is empty: draw the signature first")


def _ink_pixels(image: Image.Image) -> int:
    """How many pixels carry ink: opaque and not white (a canvas is transparent or white)."""
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A").point(lambda a: 255 if a > 32 else 0)
    dark = rgba.convert("L").point(lambda v: 255 if v < 200 else 0)
    both = Image.composite(dark, Image.new("L", rgba.size, 0), alpha)
    histogram = both.histogram()
    return int(histogram[255])


def digest(png: bytes) -> str:
    """The SHA-256 (hex) the e-signature records."""
    return hashlib.sha256(png).hexdigest()


def image_record(png: bytes) -> dict[str, Any]:
    """The audit data of the row that keeps the image: the PNG and its hash."""
    return {"png_sha256": digest(png), "png_base64": base64.b64encode(png).decode()}


def typed_attestation(signer: str, ticket_id: str, at: datetime, language: str) -> bytes:
    """The bytes a typed signature's e-signature hashes (canonical JSON, UTF-8)."""
    document = {
        "signature": "typed",
        "signer": signer,
        "statement": TYPED_STATEMENT,
        "language": language,
        "ticket": ticket_id,
        "at": at.isoformat(),
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def is_typed(report: bytes) -> bool:
    """Whether signed-off bytes are a typed attestation (else a drawn PNG)."""
    return not report.startswith(PNG_MAGIC)


def typed_record(attestation: bytes) -> dict[str, Any]:
    """The audit data of the row that keeps a typed attestation: it, and its hash."""
    return {"attestation_sha256": digest(attestation), "attestation": attestation.decode()}
