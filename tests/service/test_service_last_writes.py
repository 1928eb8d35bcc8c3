"""The compact last-write map returns exactly what was put, whatever a (tampered) row carried."""

from __future__ import annotations

import hashlib

from service.last_writes import LastWrites


def test_last_writes_return_what_was_put_and_later_writes_replace() -> None:
    marks = LastWrites()
    digest = hashlib.sha256(b"t1").hexdigest()
    marks.put("t1", 3, 4, digest)
    marks.put("t2", 5, 6, "not a digest")
    marks.put("t1", 7, 9, digest.upper())  # a later write replaces; odd text is kept as is
    for odd in ("", "é\ud800", "ab" * 40, digest[:-1]):
        marks.put(f"x{odd}", 2**40, 2**41, odd)
        assert marks.get(f"x{odd}") == (2**40, 2**41, odd)
    assert marks.get("t1") == (7, 9, digest.upper())
    assert marks.get("t2") == (5, 6, "not a digest")
    marks.put("t3", 0, 1, digest)
    assert marks.get("t3") == (0, 1, digest)
    assert marks.get("nope") is None and "nope" not in marks and "t3" in marks
    assert sorted(marks)[:3] == ["t1", "t2", "t3"] and len(marks) == 7
