"""glibc malloc settings for long-running workers that churn through large numpy buffers.

Ingest decodes, copies and evaluates groups of up to 160,000 readings in several threads. With
glibc's defaults each thread gets its own arena, and the mmap threshold rises to the largest
buffer freed so far (up to 32 MiB), so megabyte buffers come from the arenas instead of mmap
and freed ones leave holes: resident memory ratchets up on every transient peak and never comes
back (``bench/soak_ingest.py``: +2.4 MB/min over 10 minutes, in steps; Python's own allocations,
per tracemalloc, stayed flat). Two arenas and a fixed 128 KiB mmap threshold (large buffers
mmapped and returned on free) kept it flat and ~20 MB lower.

Settings the operator gave in the environment (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``)
win; on a C library other than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024


def tune_malloc() -> dict[str, int]:
    """Apply the settings above that the environment does not set; what was applied."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}  # not glibc
    wanted = {
        "MALLOC_ARENA_MAX": (M_ARENA_MAX, ARENAS),
        "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    }
    applied: dict[str, int] = {}
    for name, (param, value) in wanted.items():
        if name in os.environ:
            continue
        if mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[name] = value
        else:
            log.warning("mallopt(%s, %d) refused", name, value)
    return applied
