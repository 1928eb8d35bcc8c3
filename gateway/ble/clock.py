"""Whether the gateway's wall clock can be trusted to stamp readings.

A kit without a real-time clock boots with fake-hwclock's last saved time — hours or days behind
after a power loss — and jumps when NTP synchronises. Readings are stamped at receipt, so they
are stamped only with a trusted clock: NTP-synchronised (the test systemd-timedated's
``NTPSynchronized`` makes: ``adjtimex`` without ``STA_UNSYNC``), or, where synchronisation cannot
be known, a time not before this build. Until then they are held with the boot id and the
monotonic time, and re-stamped when the clock is trusted (``gateway.ble.held``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

log = logging.getLogger(__name__)

# No reading is older than this build; bump at release. A clock before it is certainly wrong.
BUILD_DATE: Final = datetime(2026, 10, 1, tzinfo=UTC)
BUILD_FLOOR_US: Final = int(BUILD_DATE.timestamp()) * 1_000_000
_STA_UNSYNC: Final = 0x0040  # <linux/timex.h>
_BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")


class TimeSource(Protocol):
    """The clocks a gateway reads: wall and monotonic time, the boot, NTP synchronisation."""

    def wall_us(self) -> int:
        """Wall-clock µs since the epoch (may be wrong)."""
        ...

    def monotonic_us(self) -> int:
        """Monotonic µs since boot: never jumps, meaningful only within one boot."""
        ...

    def boot_id(self) -> str:
        """An id of this boot."""
        ...

    def synchronized(self) -> bool | None:
        """Whether the wall clock is NTP-synchronised (None: cannot tell here)."""
        ...


class ClockState(StrEnum):
    """How far the wall clock is trusted."""

    SYNCHRONIZED = "ntp"  # NTP-synchronised
    PLAUSIBLE = "after_build_date"  # synchronisation unknown; not before this build
    UNTRUSTED = "untrusted"  # not synchronised, or before this build: readings are held

    @property
    def trusted(self) -> bool:
        """Whether readings may be stamped with the wall clock."""
        return self is not ClockState.UNTRUSTED


def clock_state(source: TimeSource) -> ClockState:
    """Judge ``source``'s wall clock now."""
    synced = source.synchronized()
    if synced:
        return ClockState.SYNCHRONIZED
    if synced is None and source.wall_us() >= BUILD_FLOOR_US:
        return ClockState.PLAUSIBLE
    return ClockState.UNTRUSTED


class SystemTime:
    """This machine's clocks."""

    def __init__(self, *, ntp: bool = True) -> None:
        self._boot = _read_boot_id()
        # False on a box with a battery-backed RTC and no time server (an isolated hospital
        # network): its synchronisation is then unknowable, and a clock not before this build
        # is trusted instead of every reading being held for an NTP sync that never comes.
        self._ntp = ntp

    def wall_us(self) -> int:
        """time.time_ns() in µs."""
        return time.time_ns() // 1000

    def monotonic_us(self) -> int:
        """time.monotonic_ns() in µs (CLOCK_MONOTONIC on Linux)."""
        return time.monotonic_ns() // 1000

    def boot_id(self) -> str:
        """The kernel's boot id (a per-process id where there is none)."""
        return self._boot

    def synchronized(self) -> bool | None:
        """adjtimex's ``STA_UNSYNC`` flag, as timedated reads it; None off Linux or on error."""
        return kernel_ntp_synchronized() if self._ntp else None


class InjectedTime:
    """A TimeSource from two clock functions (tests, benchmarks): synchronisation unknown."""

    def __init__(self, monotonic_s: Callable[[], float], now_us: Callable[[], int]) -> None:
        self._monotonic_s = monotonic_s
        self._now_us = now_us
        self._boot = f"injected-{uuid.uuid4()}"

    def wall_us(self) -> int:
        """The injected wall clock."""
        return self._now_us()

    def monotonic_us(self) -> int:
        """The injected monotonic clock, in µs."""
        return round(self._monotonic_s() * 1_000_000)

    def boot_id(self) -> str:
        """One id per instance."""
        return self._boot

    def synchronized(self) -> bool | None:
        """Unknown: the build-date floor decides."""
        return None


def kernel_ntp_synchronized() -> bool | None:
    """Whether the kernel's clock discipline says synchronised (Linux ``adjtimex``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        timex = _Timex()
        if libc.adjtimex(ctypes.byref(timex)) < 0:
            return None
    except (OSError, AttributeError) as exc:
        log.debug("adjtimex unavailable: %s", exc)
        return None
    return not timex.status & _STA_UNSYNC


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` (C longs, as glibc lays it out), padded past its end."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    )


def _read_boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return f"process-{uuid.uuid4()}"
