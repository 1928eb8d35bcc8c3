"""Ingest's malloc settings: large buffers are mmapped (returned on free) whatever came before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Frees an 8 MiB block (glibc then raises its mmap threshold to 8 MiB), then reports whether a
# 512 KiB block is mmapped, from mallinfo2's count of mmapped blocks.
PROBE = """
import ctypes, json, sys
from infra.malloc import tune_malloc

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = tune_malloc() if sys.argv[1] == "tuned" else {}
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(512 << 10)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"applied": applied, "mapped": mapped}))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(__import__("ctypes").CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33")


def test_untuned_glibc_serves_a_large_block_from_the_heap_after_a_larger_free() -> None:
    assert _probe("plain") == {"applied": {}, "mapped": 0}


def test_tuned_malloc_maps_large_blocks_whatever_was_freed_before() -> None:
    assert _probe("tuned") == {
        "applied": {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 131072},
        "mapped": 1,
    }


def test_the_operators_environment_wins() -> None:
    got = _probe("tuned", MALLOC_ARENA_MAX="4", MALLOC_MMAP_THRESHOLD_="4194304")
    assert got == {"applied": {}, "mapped": 0}  # 512 KiB < the operator's 4 MiB threshold
