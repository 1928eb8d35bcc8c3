"""The system bus as the virtual BlueZ answers it: the method calls vigil and its libraries make.

bleak-retry-connector sends ``Device1.Disconnect`` (closing stale links), ``Adapter1.RemoveDevice``
(clearing a device's cache) and ``Adapter1.StopDiscovery`` (force-stopping discovery); the gateway
power-cycles an adapter with ``Properties.Set(Adapter1, Powered)``. Replies are real dbus_fast
messages, so ``assert_reply`` raises ``BleakDBusError`` exactly as it would on BlueZ.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, MessageType, Variant

if TYPE_CHECKING:
    from simulator.bleak_backend.bluez import VirtualBlueZ

_PROPERTIES = "org.freedesktop.DBus.Properties"
_ADAPTER = "org.bluez.Adapter1"
_DEVICE = "org.bluez.Device1"


class VirtualBus:
    """``call`` and ``send`` of the messages above; anything else is an unknown method."""

    def __init__(self, bluez: VirtualBlueZ) -> None:
        self._bluez = bluez
        self._serials = itertools.count(1)
        self.calls: list[tuple[str, str, str]] = []  # (path, interface, member), for tests
        self._handlers: list[Callable[[Message], object]] = []

    def add_message_handler(self, handler: Callable[[Message], object]) -> None:
        """Receive every signal the bus delivers (dbus_fast's API)."""
        self._handlers.append(handler)

    def signal_owner_changed(self, name: str, old: str, new: str) -> None:
        """org.freedesktop.DBus.NameOwnerChanged, as the bus daemon sends it."""
        signal = Message(
            message_type=MessageType.SIGNAL,
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="NameOwnerChanged",
            signature="sss",
            body=[name, old, new],
        )
        for handler in list(self._handlers):
            handler(signal)

    async def call(self, message: Message) -> Message:
        """Handle ``message`` and return the reply bluetoothd would send."""
        if not message.serial:
            message.serial = next(self._serials)
        path, iface, member = message.path or "", message.interface or "", message.member or ""
        self.calls.append((path, iface, member))
        try:
            body = self._dispatch(path, iface, member, list(message.body))
        except _Error as exc:
            return Message.new_error(message, exc.name, exc.text)
        return Message.new_method_return(message, "v" if body is not None else "", _body(body))

    async def send(self, message: Message) -> None:
        """Fire and forget: handled like ``call``, reply dropped."""
        await self.call(message)

    def _dispatch(self, path: str, iface: str, member: str, body: list[Any]) -> Any:
        bluez = self._bluez
        if iface == "org.freedesktop.DBus" and member in ("AddMatch", "RemoveMatch"):
            return None
        if iface == _DEVICE and member == "Disconnect":
            _exists(bluez, path)
            bluez.hangup(path)
            return None
        adapter = next((a for a in bluez.adapters.values() if a.path == path), None)
        if iface == _ADAPTER and adapter is not None:
            if member == "RemoveDevice":
                bluez.hangup(str(body[0]))
                bluez.remove_device(str(body[0]))
                return None
            if member == "StopDiscovery":
                bluez.force_stop(adapter)
                return None
        if iface == _PROPERTIES and adapter is not None and body and body[0] == _ADAPTER:
            if member == "Set" and body[1] == "Powered":
                value = body[2].value if isinstance(body[2], Variant) else body[2]
                bluez.power(adapter, bool(value))
                return None
            if member == "Get":
                return bluez._properties[path][_ADAPTER][str(body[1])]
        raise _Error("org.freedesktop.DBus.Error.UnknownMethod", f"{iface}.{member} on {path}")


class _Error(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


def _exists(bluez: VirtualBlueZ, path: str) -> None:
    if path not in bluez._properties:
        raise _Error("org.freedesktop.DBus.Error.UnknownObject", f"{path} does not exist")


def _body(value: Any) -> list[Any]:
    if value is None:
        return []
    signature = "b" if isinstance(value, bool) else "s" if isinstance(value, str) else "as"
    return [Variant(signature, value)]
