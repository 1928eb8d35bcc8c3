"""The last audited write of each record, kept compactly for a streaming verification.

A full verification remembers, for every ticket, the position, seq and document digest of its
last audited write until it compares the stored tickets. As tuples of two ints and a 64-char
string that is ~330 bytes a ticket (17 MB for 50,000); packed into one bytes value with the
digest as its 32 raw bytes it is ~200, and what it returns is the same.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

_POSITION = struct.Struct("<qq")  # (index, seq)
_HEX = re.compile(r"[0-9a-f]{64}")
_RAW, _TEXT = b"h", b"s"  # the digest as 32 raw bytes, or (any other text) as UTF-8


class LastWrites:
    """record id -> (index, seq, digest) of its last audited write; later writes replace."""

    def __init__(self) -> None:
        self._packed: dict[str, bytes] = {}

    def put(self, record_id: str, index: int, seq: int, digest: str) -> None:
        """Remember a write of ``record_id`` (replacing an earlier one)."""
        if _HEX.fullmatch(digest):
            tail = _RAW + bytes.fromhex(digest)
        else:  # a tampered row may carry anything: kept as it is, so it is reported as it is
            tail = _TEXT + digest.encode("utf-8", "surrogatepass")
        self._packed[record_id] = _POSITION.pack(index, seq) + tail

    def get(self, record_id: str) -> tuple[int, int, str] | None:
        """(index, seq, digest) of the last write of ``record_id``, or None."""
        packed = self._packed.get(record_id)
        if packed is None:
            return None
        index, seq = _POSITION.unpack_from(packed)
        kind, body = packed[_POSITION.size : _POSITION.size + 1], packed[_POSITION.size + 1 :]
        digest = body.hex() if kind == _RAW else body.decode("utf-8", "surrogatepass")
        return index, seq, digest

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)
