"""The gateway's leg of a remote command: uplink request → site request → reply → result.

Pure bookkeeping over two publish functions, so it is tested without a broker:

- a request (retained on ``vigil/v1/gateways/<gw>/commands/<id>``) is checked (contract, its
  gateway, its topic, its expiry) and forwarded to the equipment as an MQTT 5 request whose
  Response Topic is this gateway's reply topic and whose Correlation Data is the command id;
- the equipment's reply becomes a ``CommandResult`` on this gateway's result topic;
- no reply within the request's ``timeout_s`` is an explicit ``timeout`` result;
- a command id seen again (the retained request redelivered on reconnect) is answered from the
  results kept, or ignored while it is in flight: it is never run twice by this process, nor,
  with a ``CommandJournal``, by the next one after a restart (gateway/command_journal.py).

A request that cannot be read at all is dead-lettered in the outbox with its reason (unanswerable,
it expires at the service).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contract import ContractError
from contract.commands import (
    CommandRequest,
    CommandResult,
    CommandStatus,
    EquipmentReply,
    command_result_topic,
    decode_command_request,
    decode_equipment_reply,
    equipment_command_topic,
    equipment_reply_topic,
)
from contract.topics import UPLINK_PREFIX
from gateway.command_journal import INTERRUPTED, CommandJournal

log = logging.getLogger(__name__)

# (topic, payload, response topic, correlation data)
Publish = Callable[[str, bytes, str | None, bytes | None], Awaitable[None]]
DeadLetter = Callable[[str, str, bytes], Awaitable[None]]
MAX_KEPT = 1024


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(slots=True)
class _InFlight:
    request: CommandRequest
    deadline: float  # monotonic


class GatewayCommands:
    """One gateway's commands: in flight, answered, and results not yet sent upstream."""

    def __init__(
        self,
        gateway_id: str,
        site: str | None,
        dead_letter: DeadLetter,
        journal: CommandJournal | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.site = site  # None: no site broker, nothing to forward to
        self.dead_letter = dead_letter
        self.journal = journal  # None: remembered by this process only
        self.result_topic = command_result_topic(gateway_id)
        self.in_flight: dict[str, _InFlight] = {}
        self.results: OrderedDict[str, CommandResult] = OrderedDict()
        self.unsent: OrderedDict[str, CommandResult] = OrderedDict()
        self.forwarded = 0
        if journal is not None:
            self._recover(journal)

    def _recover(self, journal: CommandJournal) -> None:
        found = journal.recover()
        for result in found.results[-MAX_KEPT:]:
            self.results[result.command_id] = result
        for command_id in found.unsent:
            kept = self.results.get(command_id)
            if kept is not None:
                self.unsent[command_id] = kept
        for request in found.interrupted:
            # Not forwarded again: the equipment may have run it before the restart.
            self._finish(request, CommandStatus.ERROR, INTERRUPTED)
        if found.results or found.interrupted or found.unreadable:
            log.info(
                "command journal: %d results kept, %d to send, %d interrupted, %d unreadable",
                len(found.results),
                len(found.unsent),
                len(found.interrupted),
                found.unreadable,
            )

    async def on_request(
        self, topic: str, payload: bytes, response_topic: str | None, publish_site: Publish
    ) -> None:
        """Handle one message on the command subscription."""
        if not payload:
            return  # the service cleared an answered request's retained copy
        command_id = topic.rsplit("/", 1)[-1]
        try:
            request = decode_command_request(payload)
            problem = self._problem(request, command_id, response_topic)
        except ContractError as exc:
            # Unreadable, so unanswerable: the service marks it expired when its time is up.
            await self.dead_letter(topic, str(exc), payload)
            return
        if request.command_id in self.results:
            self.unsent.setdefault(request.command_id, self.results[request.command_id])
            return
        if request.command_id in self.in_flight:
            return
        if problem is not None:
            await self.dead_letter(topic, problem, payload)
            self._finish(request, CommandStatus.REJECTED, problem)
        elif _now_us() >= request.expires_at_us:
            self._finish(request, CommandStatus.EXPIRED, "expired before it reached the gateway")
        elif self.site is None:
            self._finish(request, CommandStatus.REJECTED, "this gateway bridges no site broker")
        else:
            await self._forward(request, publish_site)

    def _problem(
        self, request: CommandRequest, command_id: str, response_topic: str | None
    ) -> str | None:
        if request.command_id != command_id:
            return f"topic names command {command_id!r}, payload {request.command_id!r}"
        if request.gateway_id != self.gateway_id:
            return f"command is for gateway {request.gateway_id!r}"
        if response_topic is not None and response_topic != self.result_topic:
            # Answers go to our own result topic only, never where a message points.
            return f"response topic {response_topic[:120]!r} is not {self.result_topic!r}"
        return None

    async def _forward(self, request: CommandRequest, publish_site: Publish) -> None:
        assert self.site is not None
        self.in_flight[request.command_id] = _InFlight(
            request, time.monotonic() + request.timeout_s
        )
        if self.journal is not None:
            # Written before it leaves: a crash after sending must not send it again.
            self.journal.forwarded(request)
        await publish_site(
            equipment_command_topic(self.site, request.device_id),
            request.encode(),
            equipment_reply_topic(self.site, self.gateway_id),
            request.command_id.encode(),
        )
        self.forwarded += 1
        log.info(
            "command %s (%s) sent to %s", request.command_id, request.command, request.device_id
        )

    async def on_reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        """Handle one message on the reply topic."""
        command_id = correlation.decode(errors="replace") if correlation else None
        waiting = self.in_flight.get(command_id) if command_id else None
        if waiting is None:
            await self.dead_letter(
                topic, f"reply for no command in flight ({command_id!r})", payload
            )
            return
        try:
            reply = decode_equipment_reply(payload)
            if reply.command_id != command_id or reply.device_id != waiting.request.device_id:
                raise ContractError(
                    f"reply names {reply.device_id}/{reply.command_id}, expected "
                    f"{waiting.request.device_id}/{command_id}"
                )
        except ContractError as exc:
            await self.dead_letter(topic, str(exc), payload)
            self._finish(waiting.request, CommandStatus.ERROR, f"unreadable reply: {exc}")
            return
        self._finish(waiting.request, reply.status, reply.message, reply)

    def expire_overdue(self) -> int:
        """Turn every command whose equipment did not answer in time into a timeout result."""
        now = time.monotonic()
        overdue = [f for f in self.in_flight.values() if f.deadline <= now]
        for flight in overdue:
            message = f"{flight.request.device_id} did not answer in {flight.request.timeout_s:g} s"
            self._finish(flight.request, CommandStatus.TIMEOUT, message)
        return len(overdue)

    async def send_results(self, publish_uplink: Publish) -> None:
        """Publish every result not yet sent (kept until the broker took it)."""
        while self.unsent:
            command_id, result = next(iter(self.unsent.items()))
            await publish_uplink(self.result_topic, result.encode(), None, command_id.encode())
            self.unsent.pop(command_id, None)
            if self.journal is not None:
                self.journal.sent(command_id)

    def _finish(
        self,
        request: CommandRequest,
        status: CommandStatus,
        message: str,
        reply: EquipmentReply | None = None,
    ) -> None:
        self.in_flight.pop(request.command_id, None)
        result = CommandResult(
            command_id=request.command_id,
            gateway_id=self.gateway_id,
            device_id=request.device_id,
            command=request.command,
            status=status,
            at_us=reply.at_us if reply is not None else _now_us(),
            result=reply.result if reply is not None else {},
            message=message[:500],
        )
        if self.journal is not None:
            self.journal.finished(request, result)
        self._keep(result)

    def _keep(self, result: CommandResult) -> None:
        self.results[result.command_id] = result
        self.unsent[result.command_id] = result
        while len(self.results) > MAX_KEPT:
            self.results.popitem(last=False)
        log.info("command %s ended %s: %s", result.command_id, result.status, result.message)


def is_command_topic(topic: str, gateway_id: str) -> bool:
    """Whether ``topic`` is one of this gateway's command topics."""
    prefix = f"{UPLINK_PREFIX}/{gateway_id}/commands/"
    return topic.startswith(prefix) and "/" not in topic[len(prefix) :]
