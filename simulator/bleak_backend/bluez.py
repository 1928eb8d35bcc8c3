"""A virtual BlueZ: adapters, device objects and the faults bluetoothd shows in the field.

``VirtualBlueZ`` keeps the D-Bus object tree as bleak's ``BlueZManager`` does (``_properties``,
``_services_cache``, ``_bus``, device watchers, ``_wait_condition``) and installs itself as the
manager of the running event loop, so bleak-retry-connector's BlueZ helpers (``BleakSlotManager``,
``close_stale_connections``, ``clear_cache``, ``stop_discovery``) and the gateway's own BlueZ
code run unchanged against it. What BlueZ does that a naive fake would not:

- a device object per adapter; the scan response is merged into it only while some session
  scans actively; the advertisement callback runs only when a property changes, and RSSI
  counts as changed only by 8 dB or more (``RSSI_THRESHOLD`` in BlueZ's src/device.c);
- any Device1 change (``Connected`` too) re-runs the callbacks with the whole property set;
- faults: start/stop errors by count, a silent stall (``Discovering`` stays true, nothing is
  heard) cleared by a restart or only by a power cycle, adapter removal and re-creation under
  a new name, links other processes hold.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from bleak.backends.service import BleakGATTServiceCollection
from bleak.exc import BleakDBusError, BleakError

from simulator.bleak_backend.air import AirData
from simulator.bleak_backend.dbus import VirtualBus

if TYPE_CHECKING:
    from simulator.bleak_backend.scanner import VirtualBleakScanner

ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
RSSI_THRESHOLD = 8  # dB; BlueZ ignores smaller RSSI changes (no PropertiesChanged)
_ADVERT_PROPS = ("Name", "Alias", "UUIDs", "ServiceData", "ManufacturerData", "RSSI", "TxPower")


class BlueZErrorForm(Enum):
    """D-Bus errors as bluetoothd (and bleak after its own retries) reports them."""

    NOT_READY = ("org.bluez.Error.NotReady", "Resource Not Ready")
    IN_PROGRESS = ("org.bluez.Error.InProgress", "Operation already in progress")
    NOT_AVAILABLE = ("org.bluez.Error.NotAvailable", "Operation currently not available")
    # What a connect gets when the controller refuses it for lack of resources (HCI 0x0d).
    OUT_OF_SLOTS = ("org.bluez.Error.Failed", "le-connection-abort-by-local")
    UNKNOWN_OBJECT = ("org.freedesktop.DBus.Error.UnknownObject", "Object does not exist")
    NOT_PERMITTED = ("org.bluez.Error.NotPermitted", "Read not permitted")

    def error(self) -> BleakDBusError:
        """The exception bleak raises for this reply."""
        name, text = self.value
        return BleakDBusError(name, [text])


class Stall(Enum):
    """A scanner that hears nothing while ``Discovering`` stays true, and what clears it."""

    RESTART = "restart"  # a StopDiscovery/StartDiscovery cycle clears it
    POWER_CYCLE = "power_cycle"  # only a power cycle does (bluez#807's stuck discovery)


class DeviceWatcher(NamedTuple):
    """bleak's DeviceWatcher: the token ``add_device_watcher`` returns."""

    device_path: str
    on_connected_changed: Callable[[bool], None]
    on_characteristic_value_changed: Callable[[str, bytes], None]


@dataclass(eq=False)
class VirtualAdapter:
    """One controller (hciN), identified by its MAC across re-creations."""

    name: str
    address: str
    powered: bool = True
    max_connections: int | None = None  # the controller's own limit, if any
    one_pending_connect: bool = True  # LE connects are serialised per controller
    start_errors: deque[BlueZErrorForm] = field(default_factory=deque)
    stop_errors: dict[int, BlueZErrorForm] = field(default_factory=dict)  # by stop number
    stall: Stall | None = None
    starts: int = 0
    stops: int = 0
    power_cycles: int = 0
    sessions: set[VirtualBleakScanner] = field(default_factory=set)
    connecting: str | None = None  # the address of the LE connect in flight
    in_flight: int = 0  # Connect calls under way, refused ones included
    foreign_connects: int = 0  # our next Connect calls that meet another process's pending one
    max_concurrent_connects: int = 0

    @property
    def path(self) -> str:
        """The adapter's D-Bus object path."""
        return f"/org/bluez/{self.name}"

    @property
    def discovering(self) -> bool:
        """Adapter1.Discovering: true while a session scans (and while stalled)."""
        return self.powered and bool(self.sessions)

    @property
    def active(self) -> bool:
        """Whether the controller scans actively (one active session is enough)."""
        return any(s.scanning_mode == "active" for s in self.sessions)

    def fail_starts(self, form: BlueZErrorForm, times: int) -> None:
        """Answer the next ``times`` StartDiscovery calls with ``form``."""
        self.start_errors.extend([form] * times)

    def fail_stop(self, number: int, form: BlueZErrorForm, *, stuck: bool = True) -> None:
        """Answer the ``number``-th StopDiscovery (counting from 1) with ``form``; ``stuck``
        leaves discovery wedged until a power cycle, as bluez#807 does."""
        self.stop_errors[number] = form
        if stuck:
            self.stop_errors[-number] = form  # marks "stall after this stop"


class VirtualBlueZ:
    """bluetoothd and the BlueZManager surface bleak and bleak-retry-connector read."""

    def __init__(self) -> None:
        self._properties: dict[str, dict[str, dict[str, Any]]] = {}
        self._services_cache: dict[str, BleakGATTServiceCollection] = {}
        self._bus = VirtualBus(self)
        self._device_watchers: dict[str, set[DeviceWatcher]] = {}
        self._conditions: dict[str, list[tuple[str, Any, asyncio.Event]]] = {}
        self.adapters: dict[str, VirtualAdapter] = {}
        self.foreign: set[str] = set()  # device paths connected by another process
        self.stale_gatt: set[str] = set()  # device paths whose cached GATT table is outdated
        self.radio: object = None  # the VirtualRadio that owns this BlueZ
        # Set by the radio: drop the links of a powered-off adapter; hang up one device path.
        self.on_power_off: Callable[[VirtualAdapter], None] = lambda _a: None
        self.hangup: Callable[[str], None] = lambda path: self.set_connected(path, False)
        self.add_adapter("hci0", "00:1A:7D:DA:71:10")

    # -- the manager surface -----------------------------------------------------------------

    async def async_init(self) -> None:
        """bleak calls this on the global manager; there is no bus to connect to."""

    def install(self) -> None:
        """Become bleak's BlueZ manager for the running event loop."""
        from bleak.backends.bluezdbus import manager

        instances = cast(dict[asyncio.AbstractEventLoop, Any], manager._global_instances)
        instances[asyncio.get_running_loop()] = self

    def get_default_adapter(self) -> str:
        """The first powered adapter's path (BleakError when there is none)."""
        for adapter in self.adapters.values():
            if adapter.powered:
                return adapter.path
        raise BleakError("No powered Bluetooth adapters found.")

    def is_connected(self, device_path: str) -> bool:
        """Device1.Connected."""
        return bool(self._device(device_path).get("Connected"))

    def add_device_watcher(
        self,
        device_path: str,
        on_connected_changed: Callable[[bool], None],
        on_characteristic_value_changed: Callable[[str, bytes], None],
    ) -> DeviceWatcher:
        """Call back on Connected changes of ``device_path``."""
        self._device(device_path)
        watcher = DeviceWatcher(device_path, on_connected_changed, on_characteristic_value_changed)
        self._device_watchers.setdefault(device_path, set()).add(watcher)
        return watcher

    def remove_device_watcher(self, watcher: DeviceWatcher) -> None:
        """Stop calling ``watcher``."""
        watchers = self._device_watchers.get(watcher.device_path, set())
        watchers.discard(watcher)
        if not watchers:
            self._device_watchers.pop(watcher.device_path, None)

    async def _wait_condition(self, device_path: str, name: str, value: Any) -> None:
        """Wait until Device1.<name> equals ``value`` (BleakError if the device is gone)."""
        if self._device(device_path).get(name) == value:
            return
        event = asyncio.Event()
        waiting = self._conditions.setdefault(device_path, [])
        entry = (name, value, event)
        waiting.append(entry)
        try:
            await event.wait()
        finally:
            waiting.remove(entry)

    # -- adapters ------------------------------------------------------------------------------

    def add_adapter(self, name: str, address: str, *, powered: bool = True) -> VirtualAdapter:
        """Plug in a controller: InterfacesAdded for /org/bluez/<name>."""
        adapter = VirtualAdapter(name, address.upper(), powered)
        self.adapters[name] = adapter
        self._properties[adapter.path] = {ADAPTER_IFACE: {}}
        self._refresh_adapter(adapter)
        return adapter

    def remove_adapter(self, name: str) -> VirtualAdapter:
        """Unplug (or a bluetoothd restart): the adapter, its devices and their links go."""
        adapter = self.adapters.pop(name)
        self.on_power_off(adapter)
        adapter.sessions.clear()
        for path in [p for p in self._properties if p.startswith(adapter.path + "/")]:
            self.remove_device(path)
        del self._properties[adapter.path]
        return adapter

    def recreate_adapter(self, name: str, new_name: str) -> VirtualAdapter:
        """The adapter comes back under another name (hci0 → hci1), same MAC."""
        old = self.remove_adapter(name)
        return self.add_adapter(new_name, old.address)

    def restart_daemon(self) -> None:
        """bluetoothd restarts: every object goes, org.bluez changes owner, adapters return."""
        adapters = [(a.name, a.address) for a in self.adapters.values()]
        for name, _ in adapters:
            self.remove_adapter(name)
        self._bus.signal_owner_changed("org.bluez", ":1.7", ":1.42")
        for name, address in adapters:
            self.add_adapter(name, address)

    def power(self, adapter: VirtualAdapter, on: bool) -> None:
        """Adapter1.Powered: off drops every link and discovery session; on clears a stall."""
        if not on and adapter.powered:
            adapter.powered = False
            self.on_power_off(adapter)
            adapter.sessions.clear()
            adapter.power_cycles += 1
        elif on:
            adapter.powered = True
            adapter.stall = None
        self._refresh_adapter(adapter)

    def adapter(self, name: str) -> VirtualAdapter:
        """The adapter called ``name`` (BleakError as bleak's when there is none)."""
        try:
            return self.adapters[name]
        except KeyError:
            raise BleakError(f"adapter '{name}' not found") from None

    def _refresh_adapter(self, adapter: VirtualAdapter) -> None:
        self._properties[adapter.path][ADAPTER_IFACE].update(
            Address=adapter.address,
            AddressType="public",
            Name=f"vigil-gw-{adapter.name}",
            Alias=f"vigil-gw-{adapter.name}",
            Powered=adapter.powered,
            Discovering=adapter.discovering,
            Roles=["central", "peripheral"],
        )

    # -- discovery -----------------------------------------------------------------------------

    def start_discovery(self, adapter: VirtualAdapter, scanner: VirtualBleakScanner) -> None:
        """StartDiscovery for one session (errors as bluetoothd answers them)."""
        adapter.starts += 1
        if adapter.start_errors:
            raise adapter.start_errors.popleft().error()
        if not adapter.powered:
            raise BlueZErrorForm.NOT_READY.error()
        if adapter.stall is Stall.RESTART and not adapter.sessions:
            adapter.stall = None  # a fresh StartDiscovery got the kernel scanning again
        adapter.sessions.add(scanner)
        self._refresh_adapter(adapter)

    def stop_discovery(self, adapter: VirtualAdapter, scanner: VirtualBleakScanner) -> None:
        """StopDiscovery for one session; an injected error leaves the session ended anyway."""
        if self.adapters.get(adapter.name) is not adapter:
            raise BlueZErrorForm.UNKNOWN_OBJECT.error()
        adapter.stops += 1
        adapter.sessions.discard(scanner)
        self._refresh_adapter(adapter)
        form = adapter.stop_errors.pop(adapter.stops, None)
        if form is not None:
            if adapter.stop_errors.pop(-adapter.stops, None) is not None:
                adapter.stall = Stall.POWER_CYCLE
            raise form.error()

    def force_stop(self, adapter: VirtualAdapter) -> None:
        """StopDiscovery from outside a session (bleak-retry-connector's ``stop_discovery``)."""
        adapter.sessions.clear()
        if adapter.stall is Stall.RESTART:
            adapter.stall = None
        self._refresh_adapter(adapter)

    def heard(
        self, adapter: VirtualAdapter, address: str, advert: AirData, rsp: AirData | None, rssi: int
    ) -> bool:
        """An advertising event reached ``adapter``: update its device object; True when the
        scanners were called back (something changed)."""
        if not adapter.discovering or adapter.stall is not None:
            return False
        path = self.ensure_device(adapter, address)
        props = self._properties[path][DEVICE_IFACE]
        changed: dict[str, Any] = {}
        merged = [advert, rsp] if rsp is not None and adapter.active else [advert]
        service_data = dict(props.get("ServiceData", {}))
        uuids = list(props.get("UUIDs", []))
        for data in merged:
            service_data.update(data.service_data)
            uuids += [u for u in data.service_uuids if u not in uuids]
            if data.local_name is not None and props.get("Name") != data.local_name:
                changed["Name"] = changed["Alias"] = data.local_name
        if service_data != props.get("ServiceData", {}):
            changed["ServiceData"] = service_data
        if uuids != props.get("UUIDs", []):
            changed["UUIDs"] = uuids
        if "RSSI" not in props or abs(rssi - props["RSSI"]) >= RSSI_THRESHOLD:
            changed["RSSI"] = rssi
        if not changed:
            return False
        props.update(changed)
        self._advertised(adapter, path)
        return True

    def _advertised(self, adapter: VirtualAdapter, path: str) -> None:
        props = self._properties[path][DEVICE_IFACE]
        for scanner in list(adapter.sessions):
            scanner.deliver(path, dict(props))

    # -- devices -------------------------------------------------------------------------------

    def device_path(self, adapter: VirtualAdapter, address: str) -> str:
        """/org/bluez/hciN/dev_AA_BB_…"""
        return f"{adapter.path}/dev_{address.upper().replace(':', '_')}"

    def ensure_device(self, adapter: VirtualAdapter, address: str) -> str:
        """The device object for ``address`` under ``adapter``, created if new."""
        path = self.device_path(adapter, address)
        if path not in self._properties:
            address = address.upper()
            self._properties[path] = {
                DEVICE_IFACE: {
                    "Address": address,
                    "AddressType": "random",
                    "Alias": address.replace(":", "-"),
                    "Adapter": adapter.path,
                    "Paired": False,
                    "Bonded": False,
                    "Trusted": False,
                    "Blocked": False,
                    "Connected": False,
                    "ServicesResolved": False,
                    "UUIDs": [],
                    "ServiceData": {},
                    "ManufacturerData": {},
                }
            }
        return path

    def remove_device(self, path: str) -> None:
        """Adapter1.RemoveDevice / InterfacesRemoved: the object and its cached services go."""
        if self._properties.get(path, {}).get(DEVICE_IFACE, {}).get("Connected"):
            self.set_connected(path, False)
        for child in [p for p in self._properties if p == path or p.startswith(path + "/")]:
            del self._properties[child]  # the device object and its GATT objects
        self._services_cache.pop(path, None)
        self.foreign.discard(path)
        self.stale_gatt.discard(path)  # the cache went with the device object

    def set_connected(self, path: str, connected: bool) -> None:
        """Device1.Connected changed: watchers, waiters and advert callbacks run."""
        props = self._device(path)
        if props.get("Connected") == connected:
            return
        props["Connected"] = connected
        props["ServicesResolved"] = connected
        for watcher in list(self._device_watchers.get(path, ())):
            watcher.on_connected_changed(connected)
        for name, value, event in self._conditions.get(path, []):
            if name == "Connected" and value == connected:
                event.set()
        adapter = self._adapter_of(path)
        if adapter is not None and adapter.discovering:
            self._advertised(adapter, path)  # bleak re-runs them on any Device1 change

    def foreign_link(self, adapter: VirtualAdapter, address: str) -> str:
        """Another process holds a link to ``address`` through ``adapter``."""
        path = self.ensure_device(adapter, address)
        self.foreign.add(path)
        self.set_connected(path, True)
        return path

    def links_on(self, adapter: VirtualAdapter) -> int:
        """Connected device objects under ``adapter`` (ours and other processes')."""
        prefix = adapter.path + "/"
        return sum(
            1
            for path, ifaces in self._properties.items()
            if path.startswith(prefix) and ifaces.get(DEVICE_IFACE, {}).get("Connected")
        )

    def _device(self, path: str) -> dict[str, Any]:
        try:
            return self._properties[path][DEVICE_IFACE]
        except KeyError:
            raise BleakError(f"device '{path.split('/')[-1]}' not found") from None

    def _adapter_of(self, path: str) -> VirtualAdapter | None:
        name = path.split("/")[3] if path.count("/") >= 3 else ""
        return self.adapters.get(name)
