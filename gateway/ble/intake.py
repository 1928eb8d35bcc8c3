"""The one place bytes from the air become trusted readings: allowlist, MIC, replay, catalog."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from contract.ble.bthome import decode_bthome_adv
from contract.ble.errors import BleAuthError, BleDecodeError
from contract.ble.frame import decode_patch_frame
from contract.ble.health_thermometer import decode_temperature_measurement
from contract.ble.readings import PatchReadings, advert_readings, frame_readings
from contract.ble.replay import ReplayGuard, ReplayReason
from contract.catalog import METRICS
from contract.reading import Reading, reading_problem
from gateway.ble.allowlist import PairedPatch
from gateway.ble.counters import BleCounters, RejectReason
from gateway.ble.presence import Presence

_STATUS = METRICS["status_flags"]
_WOUND = METRICS["wound_temp"]


class PatchIntake:
    """Authenticate, replay-check and convert what paired patches send; count what is refused.

    Notifications and adverts share one replay guard per patch: the patch numbers each
    measurement once, whichever way it goes out. A notification byte-identical to the last one
    accepted is the stack delivering it twice (bleak#2002), not a replay: counted as a duplicate.
    """

    def __init__(
        self,
        patches: Mapping[str, PairedPatch],
        counters: BleCounters,
        presence: Presence,
        *,
        clock: Callable[[], float],
        now_us: Callable[[], int],
    ) -> None:
        self._patches = patches
        self._counters = counters
        self._presence = presence
        self._clock = clock
        self._now_us = now_us
        self._guard = ReplayGuard()
        self._last_advert: dict[str, bytes] = {}
        self._last_frame: dict[str, bytes] = {}
        self._framed: set[str] = set()  # patches that notified frames: not read through HTS
        self._hts_seq: dict[str, int] = {}

    def notification(self, address: str, data: bytes) -> list[Reading] | None:
        """Readings of one measurement-characteristic notification ([] for a doubled one);
        None if refused."""
        patch = self._patch(address)
        if patch is None:
            return None
        self._framed.add(patch.address)
        if self._last_frame.get(patch.address) == data:
            self._counters.duplicate_frames.inc()
            return []
        try:
            frame = decode_patch_frame(data, patch.key, patch.mac)
        except BleAuthError as exc:
            self._counters.reject(patch.address, RejectReason.AUTH_FAILED, str(exc))
            return None
        except BleDecodeError as exc:
            self._counters.reject(patch.address, RejectReason.MALFORMED, str(exc))
            return None
        if not self._fresh(patch, frame.counter, replay_is_duplicate=False):
            return None
        self._last_frame[patch.address] = bytes(data)
        self._counters.accept("notify")
        ts_us = self._now_us()
        converted = frame_readings(frame, device_id=patch.device_id, ts_us=ts_us)
        readings = self._keep(converted)
        if not any(r.metric == _STATUS.name for r in readings):
            # The status byte is a reading of its own: rules alert on "off skin".
            status = float(int(frame.status))
            readings.append(
                Reading(patch.device_id, _STATUS.name, status, _STATUS.unit, ts_us, frame.counter)
            )
        return readings

    def advert(self, address: str, service_data: bytes) -> list[Reading] | None:
        """Readings of one BTHome advert ([] for a repeat of the last one); None if refused."""
        patch = self._patch(address)
        if patch is None:
            return None
        data = bytes(service_data)
        if self._last_advert.get(patch.address) == data:
            # Advertisers repeat a payload until the next measurement; skip the AES work.
            self._counters.duplicate_adverts.inc()
            return []
        try:
            advert = decode_bthome_adv(data, mac=patch.mac, key=patch.key)
        except BleAuthError as exc:
            self._counters.reject(patch.address, RejectReason.AUTH_FAILED, str(exc))
            return None
        except BleDecodeError as exc:
            self._counters.reject(patch.address, RejectReason.MALFORMED, str(exc))
            return None
        if advert.counter is None:  # cannot happen with a key (plain adverts fail as downgrades)
            return None
        fresh = self._fresh(patch, advert.counter, replay_is_duplicate=True)
        if fresh is None:
            return []
        if not fresh:
            return None
        self._last_advert[patch.address] = data
        self._counters.accept("advert")
        if advert.unknown:
            self._counters.unknown_bthome(patch.device_id, advert.unknown)
        return self._keep(advert_readings(advert, device_id=patch.device_id, ts_us=self._now_us()))

    def temperature(self, address: str, data: bytes) -> list[Reading] | None:
        """A Health Thermometer indication as a ``wound_temp`` reading; [] from a patch that
        speaks the frame (which says it, authenticated); None if refused.

        An indication carries no MIC, no off-skin flag and no counter: it is taken only from a
        plain thermometer (no frame ever notified), over a link the gateway opened to an
        allowlisted address. A patch that sends frames — even refused ones — is never read
        through it, so a spoofer or an off-skin patch cannot get a value past the frame's checks.
        """
        patch = self._patch(address)
        if patch is None:
            return None
        try:
            measured = decode_temperature_measurement(data)
        except BleDecodeError as exc:
            self._counters.hts.labels("refused").inc()
            self._counters.reject(patch.address, RejectReason.MALFORMED, f"HTS: {exc}")
            return None
        celsius = measured.celsius
        if patch.address in self._framed:
            self._counters.hts.labels("framed").inc()
            return []
        self._hts_seq[patch.address] = seq = self._hts_seq.get(patch.address, 0) + 1
        reading = Reading(patch.device_id, _WOUND.name, celsius, _WOUND.unit, self._now_us(), seq)
        if reading_problem(*reading) is not None:
            self._counters.hts.labels("refused").inc()
            self._counters.held_back.inc()
            return []
        self._presence.seen(patch.address, self._clock())
        self._counters.hts.labels("stored").inc()
        return [reading]

    def knows(self, address: str) -> bool:
        """Whether ``address`` is on the allowlist."""
        return address.upper() in self._patches

    def resume(self, marks: Mapping[str, int]) -> None:
        """Start from the last counters accepted before a restart (unpaired addresses skipped)."""
        for address, counter in marks.items():
            if address.upper() in self._patches:
                self._guard.accept(address.upper(), counter)

    def forget(self, address: str) -> None:
        """Drop a patch's replay history (after re-pairing: its counter restarts)."""
        self._guard.forget(address.upper())
        self._last_advert.pop(address.upper(), None)
        self._last_frame.pop(address.upper(), None)

    def _patch(self, address: str) -> PairedPatch | None:
        patch = self._patches.get(address.upper())
        if patch is None:
            self._counters.reject(address.upper(), RejectReason.UNKNOWN_DEVICE, "not paired")
        return patch

    def _fresh(self, patch: PairedPatch, counter: int, *, replay_is_duplicate: bool) -> bool | None:
        """True if new, None for a harmless repeat, False for a refused replay."""
        why = self._guard.accept(patch.address, counter)
        if why is None:
            self._presence.seen(patch.address, self._clock())
            return True
        if why is ReplayReason.REPLAYED and replay_is_duplicate:
            # The same measurement heard again (e.g. after a scanner restart): not an attack.
            self._counters.duplicate_adverts.inc()
            return None
        last = self._guard.last(patch.address)
        self._counters.reject(
            patch.address, RejectReason.REPLAYED, f"{why.value}: counter {counter} <= {last}"
        )
        return False

    def _keep(self, converted: PatchReadings) -> list[Reading]:
        if converted.rejected:
            self._counters.held_back.inc(len(converted.rejected))
        return list(converted.readings)
