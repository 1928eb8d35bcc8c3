"""Remote commands on tickets: issue one, record its result, expire it — each audited.

The decisions a person's request needs (who may send what to which device) are the API's
(service/api/routes/commands.py); this module keeps the store and the audit log in step. A
command id is the idempotency key: the same id again is the same command, never a second one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contract.commands import CommandResult, CommandStatus
from service.commands_model import PENDING, CommandRecord, CommandState, state_of
from service.store import ServiceStore


class CommandConflict(ValueError):
    """A command id already used for a different request."""


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


def issue(store: ServiceStore, record: CommandRecord) -> tuple[CommandRecord, bool]:
    """Store a new command with its audit entry: (the command as stored, whether it is new).

    The same id with the same request returns the stored one; with another, CommandConflict.
    """
    with store.atomic():
        if not store.put_command(record):
            existing = store.command(record.command_id)
            assert existing is not None
            if not existing.same_request(record):
                raise CommandConflict(f"command id {record.command_id!r} is another command")
            return existing, False
        store.append_audit(
            _at(record.requested_at_us),
            record.requested_by,
            "command_requested",
            record.ticket_id,
            {
                "command_id": record.command_id,
                "command": str(record.command),
                "args": record.args,
                "device": record.device_id,
                "gateway": record.gateway_id,
                "expires_at_us": record.expires_at_us,
            },
        )
    return record, True


def mark_sent(store: ServiceStore, record: CommandRecord, at_us: int) -> bool:
    """Note that a queued command is retained on the broker for its gateway."""
    sent = record.model_copy(update={"state": CommandState.SENT, "sent_at_us": at_us})
    return store.update_command(sent, (CommandState.QUEUED,))


def record_result(
    store: ServiceStore, result: CommandResult, received_us: int
) -> CommandRecord | None:
    """Store a gateway's result on its command (audited); None if it was ended already.

    Raises LookupError for a command the service never issued, ValueError for a result that
    names another device or gateway than the command.
    """
    with store.atomic():
        record = store.command(result.command_id)
        if record is None:
            raise LookupError(f"no command {result.command_id!r} was issued")
        if (record.device_id, record.gateway_id) != (result.device_id, result.gateway_id):
            raise ValueError(
                f"result names {result.gateway_id}/{result.device_id}, the command went to"
                f" {record.gateway_id}/{record.device_id}"
            )
        if record.state.final:
            return None
        return _finish(store, record, result, received_us, "gateway:" + result.gateway_id)


def expire(store: ServiceStore, record: CommandRecord, now_us: int) -> CommandRecord | None:
    """End a command whose result never came by its due time (audited); None if it had ended."""
    if record.state is CommandState.QUEUED:
        where = "never published: the service could not reach the broker before it expired"
    else:
        where = "no result: the gateway stayed offline until it expired, or lost it"
    result = CommandResult(
        command_id=record.command_id,
        gateway_id=record.gateway_id,
        device_id=record.device_id,
        command=record.command,
        status=CommandStatus.EXPIRED,
        at_us=now_us,
        message=where,
    )
    with store.atomic():
        return _finish(store, record, result, now_us, "service")


def _finish(
    store: ServiceStore, record: CommandRecord, result: CommandResult, at_us: int, actor: str
) -> CommandRecord | None:
    done = record.model_copy(
        update={"state": state_of(result.status), "result": result, "finished_at_us": at_us}
    )
    if not store.update_command(done, PENDING):
        return None
    store.append_audit(
        _at(at_us),
        actor,
        "command_result",
        record.ticket_id,
        {
            "command_id": record.command_id,
            "command": str(record.command),
            "status": str(result.status),
            "message": result.message,
        },
    )
    return done
