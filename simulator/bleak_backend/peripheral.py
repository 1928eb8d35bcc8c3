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
    advertised: bool = False
    air_key: bytes = field(default=b"", repr=False)  # what frame and advert were sealed with
    corrupted: bool = False  # its notified frame had a byte flipped (its advert did not)
    adverts: int = 0  # how often its advert went out to a listening scanner


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
        self.info = DeviceInformation(
            model_number="VGL-PATCH-1",
            serial_number=f"SN-{model.device_id}",
            firmware_revision="1.4.2",
        )
        self.counter = 0
        self.adverts_sent = 0  # adverts that went out to a listening scanner, data or not
        self.emissions: deque[Emission] = deque(maxlen=history)
        self._sent: deque[bytes] = deque(maxlen=8)  # recent frames, for replay scenarios
        self._advert: AdvertisementData | None = None
        self._corrupt = 0
        self._replay = 0
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
        self._advert = self._build_advert(emission)
        return emission

    def frames_for(self, emission: Emission) -> list[bytes]:
        """What the measurement characteristic notifies for ``emission``, replays first."""
        out: list[bytes] = []
        if self._replay and self._sent:
            self._replay -= 1
            out.append(self._sent[-1])
        data = encode_patch_frame(emission.frame, self.air_key, self.mac)
        self._sent.append(data)
        if self._corrupt:
            self._corrupt -= 1
            emission.authentic = False
            emission.corrupted = True
            data = data[:-1] + bytes([data[-1] ^ 0x5A])  # a flipped MIC byte
        emission.notified = True
        out.append(data)
        return out

    def advert(self) -> AdvertisementData | None:
        """The advert the patch would send now, or None when it is not advertising."""
        if not (self.present and self.advertising):
            return None
        self.adverts_sent += 1
        if self._advert is None:
            return self._discovery_advert({})
        if self.emissions:
            self.emissions[-1].advertised = True
            self.emissions[-1].adverts += 1
        return self._advert

    def current_advert(self) -> AdvertisementData | None:
        """The advert payload as it stands, whether or not the patch is advertising."""
        return self._advert

    def _build_advert(self, emission: Emission) -> AdvertisementData:
        sample = emission.sample
        values = [BTHomeValue(BTHomeObject.BATTERY, float(round(sample.battery)))]
        if not sample.off_skin:  # values measured in air would mislead; frames flag it instead
            values += [
                BTHomeValue(BTHomeObject.TEMPERATURE, sample.wound_temp),
                BTHomeValue(BTHomeObject.TEMPERATURE, sample.skin_temp),
                BTHomeValue(BTHomeObject.MOISTURE, sample.exudate),
            ]
        payload = encode_bthome_adv(
            values, mac=self.mac, key=self.air_key, counter=emission.counter
        )
        return self._discovery_advert({uuids.BTHOME_SERVICE_DATA: payload})

    def _discovery_advert(self, service_data: dict[str, bytes]) -> AdvertisementData:
        return AdvertisementData(
            local_name=f"vigil {self.device_id}",
            manufacturer_data={},
            service_data=service_data,
            service_uuids=[uuids.PATCH_SERVICE] if self.connectable else [],
            tx_power=None,
            rssi=self.rssi,
            platform_data=(),
        )

    # -- GATT values -------------------------------------------------------------------------

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
        """Before each of the next ``frames`` frames, re-send the previous one verbatim."""
        self._replay += frames

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
