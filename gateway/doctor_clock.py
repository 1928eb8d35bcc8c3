"""The doctor's clock-offset check: this box's clock against the backbone's, over SNTP.

MQTT carries no time, so the offset is measured with one SNTP (RFC 4330) query to the NTP
server the backbone keeps time by — by default the uplink broker's host, which then serves NTP
to its gateways. Readings are stamped by the gateway and judged by ingest against its own clock
(the timestamp window), so a gateway whose clock is off stamps readings the rules misplace.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.doctor import Check, Status

NTP_PORT = 123
NTP_TO_UNIX_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
_PACKET = 48
_CLIENT_V4 = 0x23  # leap 0, version 4, mode 3 (client)
_SERVER = 4
_BROADCAST = 5


class SntpError(OSError):
    """No usable answer: none came, or it was not a server's answer to our request."""


@dataclass(frozen=True, slots=True)
class Offset:
    """How far the server's clock is ahead of ours (negative: behind), and the round trip."""

    offset_s: float
    delay_s: float


def to_ntp(unix_s: float) -> bytes:
    """A Unix time as a 64-bit NTP timestamp."""
    seconds = int(unix_s)
    fraction = int((unix_s - seconds) * 2**32) & 0xFFFFFFFF
    return struct.pack("!II", (seconds + NTP_TO_UNIX_S) & 0xFFFFFFFF, fraction)


def from_ntp(raw: bytes) -> float:
    """A 64-bit NTP timestamp as a Unix time."""
    seconds, fraction = struct.unpack("!II", raw)
    return float(seconds - NTP_TO_UNIX_S + fraction / 2**32)


def ntp_server(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port); the port defaults to 123."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else NTP_PORT
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, int(port)
    return text, NTP_PORT


def sntp_query(
    host: str, port: int = NTP_PORT, timeout_s: float = 2.0, clock: Callable[[], float] = time.time
) -> Offset:
    """One SNTP exchange with ``host``; SntpError (an OSError) when it gives no usable answer."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout_s)
        sock.connect(address)
        sent = clock()
        stamp = to_ntp(sent)
        sock.send(bytes([_CLIENT_V4]) + bytes(39) + stamp)
        try:
            answer = sock.recv(512)
        except TimeoutError:
            raise SntpError(f"no answer in {timeout_s:g} s") from None
        received = clock()
    if len(answer) < _PACKET or answer[0] & 0x07 not in (_SERVER, _BROADCAST):
        raise SntpError("the answer is not an NTP server's")
    if answer[1] == 0:
        code = answer[12:16].decode("ascii", "replace")
        raise SntpError(f"the server refused to give the time (kiss code {code!r})")
    if answer[24:32] != stamp:
        raise SntpError("the answer is not to our request (originate time differs)")
    server_in, server_out = from_ntp(answer[32:40]), from_ntp(answer[40:48])
    offset = ((server_in - sent) + (server_out - received)) / 2
    delay = (received - sent) - (server_out - server_in)
    return Offset(offset, delay)


async def check_clock_offset(
    server: str | None,
    max_offset_s: float,
    port: int = NTP_PORT,
    timeout_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> Check:
    """This box's clock within ``max_offset_s`` of ``server``'s (the backbone's time)."""
    name = "clock offset"
    if not server:
        return Check(name, Status.SKIP, "no NTP server to compare with (pass --ntp-server)")
    where = server if port == NTP_PORT else f"{server}:{port}"
    try:
        measured = await asyncio.to_thread(sntp_query, server, port, timeout_s, clock)
    except OSError as exc:
        return Check(
            name,
            Status.FAIL,
            f"no time from {where} over NTP (UDP {port}): {exc or type(exc).__name__}",
            f"open UDP {port} from this box to {server} and serve NTP there (chrony: `allow` the"
            " gateways' subnet), or give the NTP server the backbone uses: --ntp-server HOST",
        )
    ahead = -measured.offset_s  # the server's clock minus ours, turned round: ours ahead
    detail = (
        f"{abs(ahead):.3f} s {'ahead of' if ahead >= 0 else 'behind'} {where}"
        f" (round trip {measured.delay_s * 1000:.0f} ms)"
    )
    if abs(ahead) > max_offset_s:
        return Check(
            name,
            Status.FAIL,
            f"{detail}; at most {max_offset_s:g} s is acceptable",
            f"`timedatectl set-ntp true`; set NTP={server} in /etc/systemd/timesyncd.conf and"
            " `systemctl restart systemd-timesyncd`; `timedatectl timesync-status` must show it",
        )
    return Check(name, Status.OK, detail)
