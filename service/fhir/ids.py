"""FHIR ids of vigil objects, and the conditional-create identifier of a reading.

A FHIR id is 1–64 of letters, digits, ``-`` and ``.``; vigil ids also allow ``_`` and ``:``
and run to 128 characters. An id that is already a valid FHIR id is used as it is; any other
becomes ``x-`` and 40 hex digits of its SHA-256, found again by scanning what the caller sees.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from contract import METRICS, Reading

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
HASHED_PREFIX = "x-"
# The namespace of the deterministic urn:uuid fullUrls in transaction bundles.
_URN_NAMESPACE = uuid.UUID("1f0c6e2a-6f4e-5b7d-9b1c-7a6f3f0e2d41")


def _digest(text: str, chars: int = 40) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def fhir_id(vigil_id: str) -> str:
    """The FHIR id of the object vigil calls ``vigil_id``."""
    if FHIR_ID.match(vigil_id):
        return vigil_id
    return HASHED_PREFIX + _digest(vigil_id)


def reading_identifier(reading: Reading) -> str:
    """The identifier value of ``reading``: device, metric, timestamp and seq.

    Metric names hold no dot and the last two parts are digits, so it is read back from the
    right whatever dots the device id holds.
    """
    return f"{reading.device_id}.{reading.metric}.{reading.ts_us}.{reading.seq}"


def parse_reading_identifier(value: str) -> tuple[str, str, int, int]:
    """(device id, metric, ts_us, seq) of a ``reading_identifier``; ValueError if it is none."""
    device_id, metric, ts_us, seq = value.rsplit(".", 3)
    if metric not in METRICS or not device_id:
        raise ValueError(f"not a reading identifier: {value!r}")
    return device_id, metric, int(ts_us), int(seq)


def hashed_id(prefix: str, key: str) -> str:
    """A FHIR id made of ``prefix`` and 40 hex digits of the SHA-256 of ``key``."""
    return prefix + _digest(key)


def observation_id(reading: Reading) -> str:
    """The FHIR id of the Observation of ``reading``."""
    return hashed_id("o-", reading_identifier(reading))


def urn(kind: str, key: str) -> str:
    """A stable ``urn:uuid`` for a resource of ``kind`` known by ``key`` in a bundle."""
    return f"urn:uuid:{uuid.uuid5(_URN_NAMESPACE, f'{kind}/{key}')}"
