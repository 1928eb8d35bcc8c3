"""A remote command as the service keeps it: who asked, where it is, how it ended."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from contract.commands import CommandName, CommandRequest, CommandResult, CommandStatus

GRACE_US = 10_000_000  # beyond expiry + timeout before a command without a result is expired


class CommandState(StrEnum):
    """Where a command is: waiting to be published, published, or ended (a CommandStatus)."""

    QUEUED = "queued"  # stored, not yet retained on the broker
    SENT = "sent"  # retained for its gateway (which may be offline: it takes it on connect)
    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"
    ERROR = "error"
    TIMEOUT = "timeout"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        """Whether the command has ended."""
        return self not in (CommandState.QUEUED, CommandState.SENT)


PENDING = (CommandState.QUEUED, CommandState.SENT)


class CommandRecord(BaseModel):
    """One command on one ticket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str
    ticket_id: str
    device_id: str
    gateway_id: str
    command: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    requested_by: str
    requested_at_us: int
    expires_at_us: int
    timeout_s: Annotated[float, Field(gt=0)]
    state: CommandState = CommandState.QUEUED
    sent_at_us: int | None = None
    finished_at_us: int | None = None
    result: CommandResult | None = None

    @property
    def due_us(self) -> int:
        """When a command still without a result is declared expired."""
        return self.expires_at_us + round(self.timeout_s * 1e6) + GRACE_US

    def request(self) -> CommandRequest:
        """The request the gateway gets."""
        return CommandRequest(
            command_id=self.command_id,
            gateway_id=self.gateway_id,
            device_id=self.device_id,
            command=self.command,
            args=self.args,
            issued_at_us=self.requested_at_us,
            expires_at_us=self.expires_at_us,
            timeout_s=self.timeout_s,
        )

    def same_request(self, other: CommandRecord) -> bool:
        """Whether ``other`` asks for the same thing (a retry of the same command id)."""
        return (self.ticket_id, self.device_id, self.command, self.args) == (
            other.ticket_id,
            other.device_id,
            other.command,
            other.args,
        )


def state_of(status: CommandStatus) -> CommandState:
    """The final state a result's status ends a command in."""
    return CommandState(status.value)
