"""A virtual patch on the air: PatchModel physiology sent as authenticated frames and adverts."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from bleak.backends.scanner import AdvertisementData

from contract.ble import uuids
from contract.ble.address import address_from_str
from contract.ble.bthome import BTHomeObject, BTHomeValue, encode_bthome_adv
from contract.ble.frame import PatchFlags, PatchFrame, encode_patch_frame
from contract.ble.gatt import DeviceInformation, encode_battery_level, encode_device_information
from contract.ble.health_thermometer import celsius_measurement, encode_temperature_measurement
from simulator.bleak_backend import air
from simulator.bleak_backend.air import AirData
from simulator.faults import Fault, FaultKind
from simulator.patch import PatchModel, PatchSample

LOW_BATTERY_PCT = 15.0  # the same threshold simulator.fleet uses for its status flags


@dataclass(slots=True)
class Emission:
    """One measurement as the patch made it, and how it went on the air; tests compare with it."""

    counter: int
    ts_us: int
    sample: PatchSample
    frame: PatchFrame
    authentic: bool = True  # sealed with the provisioned key and not corrupted
    notified: bool = False
    advertised: bool = False  # a scanner was called back with its advert
    air_key: bytes = field(default=b"", repr=False)  # what frame and advert were sealed with
    corrupted: bool = False  # its notified frame had a byte flipped (its advert did not)
    adverts: int = 0  # how often a scanner was called back with its advert


@dataclass(frozen=True, slots=True)
class Transmission:
    """One advertising event: the advert PDU and the scan response (decoded as a scanner would
    decode them; ``air.advert_pdu``/``air.scan_response`` made and size-checked the bytes)."""

    advert: AirData
    scan_response: AirData
    rssi: int
    advert_bytes: bytes
    scan_response_bytes: bytes


class VirtualPatch:
    """One patch: its address, key, physiology, GATT values and scripted misbehaviour."""

    def __init__(
        self,
        address: str,
        key: bytes,
        model: PatchModel,
        *,
        connectable: bool = True,
        measure_every_s: float = 1.0,
        advert_every_s: float = 1.0,
        rssi: int = -60,
        history: int = 10_000,
    ) -> None:
        self.address = address.upper()
        self.mac = address_from_str(self.address)
        self.key = bytes(key)
        self.air_key = self.key  # what it actually seals with; differs when spoofed
        self.model = model
        self.connectable = connectable
        self.measure_every_s = measure_every_s
        self.advert_every_s = advert_every_s
        self.rssi = rssi
        self.present = True  # within radio range of the gateway
        self.advertising = True
        self.advertise_while_connected = False  # most patch firmware stops advertising
        self.unreadable: set[str] = set()  # characteristics answering NotPermitted
        self.info = DeviceInformation(
            model_number="VGL-PATCH-1",
            serial_number=f"SN-{model.device_id}",
            firmware_revision="1.4.2",
            hardware_revision="B2",
        )
        self.sends_frames = True  # False: a plain Health Thermometer (indications only)
        self.extra_bthome = b""  # encoded BTHome objects vigil does not use (newer firmware)
        self.counter = 0
        self.adverts_sent = 0  # advertising events on the air, heard or not
        self.adverts_heard = 0  # scanner callbacks those events caused
        self.emissions: deque[Emission] = deque(maxlen=history)
        self._sent: deque[bytes] = deque(maxlen=8)  # recent frames, for replay scenarios
        self._air: Transmission | None = None
        self._corrupt = 0
        self._replay = 0
        self._double = 0
        self._rebooted = False

    @property
    def device_id(self) -> str:
        """The id readings of this patch carry."""
        return self.model.device_id

    # -- measuring -------------------------------------------------------------------------

    def measure(self, t_s: float, ts_us: int) -> Emission | None:
        """Take the next measurement (None while the patch is silent) and refresh the advert."""
        if self.model.silent(t_s):
            return None
        sample = self.model.sample(t_s)
        self.counter += 1
        status = PatchFlags(0)
        if sample.off_skin:
            status |= PatchFlags.OFF_SKIN
        if sample.sensor_fault:
            status |= PatchFlags.SENSOR_FAULT
        if sample.battery < LOW_BATTERY_PCT:
            status |= PatchFlags.LOW_BATTERY
        if self._rebooted:
            status |= PatchFlags.REBOOTED
            self._rebooted = False
        frame = PatchFrame(
            counter=self.counter,
            wound_ph=None if sample.sensor_fault else sample.wound_ph,
            wound_temp=sample.wound_temp,
            skin_temp=sample.skin_temp,
            exudate=sample.exudate,
            battery=round(sample.battery),
            status=status,
        )
        emission = Emission(
            self.counter,
            ts_us,
            sample,
            frame,
            authentic=self.air_key == self.key,
            air_key=self.air_key,
        )
        self.emissions.append(emission)
        self._air = self._transmission(self._bthome(emission))
        return emission

    def frames_for(self, emission: Emission) -> list[bytes]:
        """What the measurement characteristic notifies for ``emission``: a replayed older
        frame first, and the frame twice when notifications are doubled (bleak#2002)."""
        out: list[bytes] = []
        if self._replay and len(self._sent) >= 2:
            self._replay -= 1
            out.append(self._sent[-2])  # a recorded frame, not the one just before
        data = encode_patch_frame(emission.frame, self.air_key, self.mac)
        self._sent.append(data)
        if self._corrupt:
            self._corrupt -= 1
            emission.authentic = False
            emission.corrupted = True
            data = data[:-1] + bytes([data[-1] ^ 0x5A])  # a flipped MIC byte
        emission.notified = True
        out.append(data)
        if self._double:
            self._double -= 1
            out.append(data)
        return out

    def transmit(self) -> Transmission | None:
        """One advertising event, or None when the patch is not advertising."""
        if not (self.present and self.advertising):
            return None
        self.adverts_sent += 1
        if self._air is None or self._air.rssi != self.rssi:
            bthome = self._bthome(self.emissions[-1]) if self.emissions else None
            self._air = self._transmission(bthome)
        return self._air

    def heard(self, callbacks: int) -> None:
        """The radio reports how many scanners were called back with the last transmission."""
        if not callbacks:
            return
        self.adverts_heard += callbacks
        if self.emissions:
            self.emissions[-1].advertised = True
            self.emissions[-1].adverts += callbacks

    def current_advert(self) -> AdvertisementData | None:
        """The advert and scan response as an active scanner reports them (None before the
        first measurement), whether or not the patch is advertising."""
        if self._air is None or not self._air.advert.service_data:
            return None
        return AdvertisementData(
            local_name=self._air.scan_response.local_name,
            manufacturer_data={},
            service_data=dict(self._air.advert.service_data),
            service_uuids=list(self._air.scan_response.service_uuids),
            tx_power=None,
            rssi=self.rssi,
            platform_data=(),
        )

    @property
    def local_name(self) -> str:
        """The name in the scan response (the device id, shortened if it must be)."""
        return self.device_id

    def _bthome(self, emission: Emission) -> bytes:
        sample = emission.sample
        values = [BTHomeValue(BTHomeObject.BATTERY, float(round(sample.battery)))]
        if not sample.off_skin:  # values measured in air would mislead; frames flag it instead
            values += [
                BTHomeValue(BTHomeObject.TEMPERATURE, sample.wound_temp),
                BTHomeValue(BTHomeObject.TEMPERATURE, sample.skin_temp),
                BTHomeValue(BTHomeObject.MOISTURE, sample.exudate),
            ]
        return encode_bthome_adv(
            values,
            mac=self.mac,
            key=self.air_key,
            counter=emission.counter,
            extra_objects=self.extra_bthome,
        )

    def _transmission(self, bthome: bytes | None) -> Transmission:
        advert = air.advert_pdu(bthome)
        response = air.scan_response(self.local_name, connectable=self.connectable)
        return Transmission(air.parse(advert), air.parse(response), self.rssi, advert, response)

    # -- GATT values -------------------------------------------------------------------------

    def refuses_read(self, char_uuid: str) -> bool:
        """Whether a read of ``char_uuid`` is answered NotPermitted (a firmware quirk)."""
        return char_uuid in self.unreadable

    def refuse_device_information(self) -> None:
        """Answer every Device Information read with NotPermitted."""
        self.unreadable |= {
            uuids.MODEL_NUMBER,
            uuids.SERIAL_NUMBER,
            uuids.FIRMWARE_REVISION,
            uuids.HARDWARE_REVISION,
        }

    def read(self, char_uuid: str) -> bytes | None:
        """The value of a readable characteristic, or None if it is not readable."""
        if char_uuid == uuids.BATTERY_LEVEL:
            battery = self.emissions[-1].frame.battery if self.emissions else None
            return encode_battery_level(battery if battery is not None else 100)
        return encode_device_information(self.info).get(char_uuid)

    def temperature_indication(self, emission: Emission) -> bytes:
        """The Health Thermometer indication for a measurement (wound-bed temperature)."""
        return encode_temperature_measurement(celsius_measurement(emission.sample.wound_temp))

    # -- scenarios -----------------------------------------------------------------------------

    def corrupt_next(self, frames: int = 1) -> None:
        """Corrupt the next ``frames`` notified frames (they will fail authentication)."""
        self._corrupt += frames

    def replay_next(self, frames: int = 1) -> None:
        """Before each of the next ``frames`` frames, re-send an older one (two back) verbatim."""
        self._replay += frames

    def double_next(self, frames: int = 1) -> None:
        """Notify each of the next ``frames`` frames twice, byte for byte (bleak#2002)."""
        self._double += frames

    def reboot(self, *, persisted: bool = True) -> None:
        """Power-cycle: resume at the flash mark + 256 as the profile asks (or, with a firmware
        bug, at 0), and flag the next frame REBOOTED."""
        mark = self.counter // 256 * 256  # the last multiple of 256 written to flash
        self.counter = mark + 256 - 1 if persisted else 0  # measure() adds one before use
        self._rebooted = True

    def impersonate(self, key: bytes | None = None) -> None:
        """From now on seal with ``key`` (random by default): a spoofer or a re-keyed patch."""
        self.air_key = key if key is not None else os.urandom(16)

    def restore_key(self) -> None:
        """Seal with the provisioned key again."""
        self.air_key = self.key

    def detach(self, at_s: float) -> None:
        """Take the patch off the skin at simulated time ``at_s`` (flagged 120 s later)."""
        self.model.faults.append(Fault(self.device_id, FaultKind.DETACH, at_s))

    def drain_battery(self, to_pct: float = 10.0) -> None:
        """Make the battery read about ``to_pct`` from now on."""
        self.model.battery_start = to_pct
        self.model.battery_drain_per_h = 0.0
