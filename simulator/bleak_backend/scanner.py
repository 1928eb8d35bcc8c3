"""``VirtualBleakScanner``: a bleak scanner backend that listens to a VirtualRadio."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)

from simulator.bleak_backend.radio import DeviceHandle, VirtualRadio


class VirtualBleakScanner(BaseBleakScanner):
    """Scans a VirtualRadio; pass ``radio=`` through ``BleakScanner`` or use ``bind(radio)``."""

    radio: ClassVar[VirtualRadio | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        radio: VirtualRadio | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        chosen = radio or type(self).radio
        if chosen is None:
            raise TypeError("VirtualBleakScanner needs a radio: pass radio= or use bind(radio)")
        self._radio: VirtualRadio = chosen
        self.scanning_mode = scanning_mode

    @classmethod
    def bind(cls, radio: VirtualRadio) -> type[VirtualBleakScanner]:
        """A subclass tied to ``radio``, to hand to ``BleakScanner(backend=...)``."""
        return type(cls.__name__, (cls,), {"radio": radio})

    async def start(self) -> None:
        """Start hearing the radio's adverts; forgets what was seen before, as bleak asks."""
        self.seen_devices = {}
        self._radio.attach_scanner(self)

    async def stop(self) -> None:
        """Stop hearing adverts."""
        self._radio.detach_scanner(self)

    def hear(self, radio: VirtualRadio, address: str, advert: AdvertisementData) -> None:
        """Called by the radio for every advert on the air."""
        if not self.is_allowed_uuid(advert.service_uuids):
            return
        device = self.create_or_update_device(
            address, address, advert.local_name, DeviceHandle(radio, address), advert
        )
        self.call_detection_callbacks(device, advert)
