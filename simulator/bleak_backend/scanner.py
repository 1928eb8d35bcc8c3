"""``VirtualBleakScanner``: a bleak scanner backend whose discovery sessions run on the virtual
BlueZ, one adapter each (``bluez={"adapter": "hci1"}``, the default adapter otherwise)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)
from bleak.exc import BleakDBusError, BleakError

from simulator.bleak_backend.bluez import VirtualAdapter
from simulator.bleak_backend.radio import VirtualRadio


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
        bluez: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        chosen = radio or type(self).radio
        if chosen is None:
            raise TypeError("VirtualBleakScanner needs a radio: pass radio= or use bind(radio)")
        self._radio: VirtualRadio = chosen
        self.scanning_mode = scanning_mode
        args = bluez or {}
        self._adapter_name: str | None = args.get("adapter")
        if scanning_mode == "passive" and not args.get("or_patterns"):
            raise BleakError("passive scanning mode requires bluez or_patterns")  # as bleak's
        self._adapter: VirtualAdapter | None = None

    @classmethod
    def bind(cls, radio: VirtualRadio) -> type[VirtualBleakScanner]:
        """A subclass tied to ``radio``, to hand to ``BleakScanner(backend=...)``."""
        return type(cls.__name__, (cls,), {"radio": radio})

    @classmethod
    def install_in_loop(cls) -> None:
        """Make the bound radio's virtual BlueZ bleak's manager in the running loop (the
        gateway calls this before it looks for BlueZ)."""
        if cls.radio is not None:
            cls.radio.bluez.install()

    async def start(self) -> None:
        """StartDiscovery on the adapter; forgets what was seen before, as bleak does."""
        bluez = self._radio.bluez
        bluez.install()
        if self._adapter_name is None:
            path = bluez.get_default_adapter()
            adapter = bluez.adapter(path.rsplit("/", 1)[-1])
        else:
            adapter = bluez.adapter(self._adapter_name)
        self.seen_devices = {}
        bluez.start_discovery(adapter, self)
        self._adapter = adapter

    async def stop(self) -> None:
        """StopDiscovery; a session that BlueZ already ended answers as bluetoothd does."""
        adapter, self._adapter = self._adapter, None
        if adapter is None or not adapter.powered:
            return  # bleak takes NotReady from a powered-off adapter as stopped
        if self not in adapter.sessions and self._radio.bluez.adapters.get(adapter.name) is adapter:
            raise BleakDBusError("org.bluez.Error.Failed", ["No discovery started"])
        self._radio.bluez.stop_discovery(adapter, self)

    def deliver(self, path: str, props: dict[str, Any]) -> None:
        """Called by the virtual BlueZ when the device object changed (bleak's handler)."""
        service_uuids = list(props.get("UUIDs", []))
        if not self.is_allowed_uuid(service_uuids):
            return
        advert = AdvertisementData(
            local_name=props.get("Name"),
            manufacturer_data=dict(props.get("ManufacturerData", {})),
            service_data={k: bytes(v) for k, v in props.get("ServiceData", {}).items()},
            service_uuids=service_uuids,
            tx_power=props.get("TxPower"),
            rssi=props.get("RSSI", -127),
            platform_data=(path, props),
        )
        address = props["Address"]
        name = None if props["Alias"] == address.replace(":", "-") else props["Alias"]
        device = self.create_or_update_device(
            path, address, name, {"path": path, "props": props, "radio": self._radio}, advert
        )
        self.call_detection_callbacks(device, advert)
