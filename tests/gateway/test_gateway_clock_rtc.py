"""A box with a battery-backed RTC and no time server is not stuck holding readings."""

from __future__ import annotations

from gateway.ble.clock import BUILD_FLOOR_US, ClockState, SystemTime, clock_state


def test_without_ntp_a_clock_after_the_build_date_is_trusted() -> None:
    rtc = SystemTime(ntp=False)
    assert rtc.synchronized() is None
    assert rtc.wall_us() >= BUILD_FLOOR_US  # this machine's clock is after the build date
    assert clock_state(rtc) is ClockState.PLAUSIBLE
    assert clock_state(rtc).trusted


def test_with_ntp_expected_the_kernel_decides() -> None:
    state = clock_state(SystemTime())
    assert state in (ClockState.SYNCHRONIZED, ClockState.UNTRUSTED, ClockState.PLAUSIBLE)
