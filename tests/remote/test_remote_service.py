"""Service side without a broker: presence decisions, the command desk, and the API's refusals."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from contract import AlertTransition, DeviceKind
from contract.commands import CommandName, CommandResult, CommandStatus
from contract.presence import PresenceKind, PresenceReason, offline, online
from service import commands, desk
from service.api import create_app
from service.api.settings import ApiSettings
from service.commands_model import CommandRecord, CommandState
from service.model import Tier
from service.presence import apply_status, is_stale
from service.store import SqliteStore
from tests.service.factories import device, engineer, site
from tests.service.live import mint_tokens

T = 1_700_000_000_000_000
GW = "gw-1"


def test_a_last_will_raises_once_and_coming_back_clears() -> None:
    up = online(PresenceKind.EQUIPMENT, "us-1", T, T)
    record, alert = apply_status(None, up, GW, T + 1)
    assert alert is None and record.last_online_us == T + 1
    will = offline(PresenceKind.EQUIPMENT, "us-1", T, T, PresenceReason.LAST_WILL)
    record, alert = apply_status(record, will, GW, T + 60_000_000)
    assert alert is not None and alert.transition is AlertTransition.RAISED
    assert alert.at_us == T + 60_000_000 and record.alert_raised
    assert record.last_online_us == T + 60_000_000 and record.uptime_at(T) is None
    assert is_stale(record, will)  # the retained will again: nothing
    back = online(PresenceKind.EQUIPMENT, "us-1", T + 70_000_000, T + 70_000_000)
    record, alert = apply_status(record, back, GW, T + 70_000_001)
    assert alert is not None and alert.transition is AlertTransition.CLEARED
    assert not record.alert_raised and record.uptime_at(T + 80_000_000) == pytest.approx(10)
    assert is_stale(record, will)  # an older session's will, delivered late


def test_a_clean_shutdown_raises_nothing() -> None:
    up = online(PresenceKind.GATEWAY, GW, T, T)
    record, _ = apply_status(None, up, GW, T)
    bye = offline(PresenceKind.GATEWAY, GW, T + 5, T, PresenceReason.SHUTDOWN)
    record, alert = apply_status(record, bye, GW, T + 5)
    assert alert is None and str(record.state) == "offline"


def _record(command_id: str = "c1", command: CommandName = CommandName.SELF_TEST) -> CommandRecord:
    return CommandRecord(
        command_id=command_id,
        ticket_id="t1",
        device_id="us-000",
        gateway_id=GW,
        command=command,
        requested_by="engineer:e1",
        requested_at_us=T,
        expires_at_us=T + 60_000_000,
        timeout_s=5.0,
    )


def _result(status: CommandStatus = CommandStatus.OK, **changes: str) -> CommandResult:
    fields = {"command_id": "c1", "gateway_id": GW, "device_id": "us-000", **changes}
    return CommandResult(command=CommandName.SELF_TEST, status=status, at_us=T + 1, **fields)


def test_the_command_desk_is_idempotent_and_audited() -> None:
    store = SqliteStore()
    stored, new = commands.issue(store, _record())
    assert new and stored.state is CommandState.QUEUED
    assert commands.issue(store, _record()) == (stored, False)
    with pytest.raises(commands.CommandConflict):
        commands.issue(store, _record(command=CommandName.REBOOT))
    with pytest.raises(LookupError):
        commands.record_result(store, _result(command_id="nope"), T)
    with pytest.raises(ValueError, match="went to"):
        commands.record_result(store, _result(device_id="us-9"), T)
    done = commands.record_result(store, _result(CommandStatus.FAILED), T + 2)
    assert done is not None and done.state is CommandState.FAILED
    assert commands.record_result(store, _result(CommandStatus.OK), T + 3) is None  # final
    assert commands.expire(store, done, T + 4) is None
    actions = [e.action for e in store.audit_log()]
    assert actions.count("command_requested") == 1 and actions.count("command_result") == 1


def test_overdue_commands_expire_explicitly() -> None:
    store = SqliteStore()
    record, _ = commands.issue(store, _record())
    assert store.commands_overdue(record.expires_at_us) == []  # timeout and grace first
    [due] = store.commands_overdue(record.due_us)
    ended = commands.expire(store, due, record.due_us)
    assert ended is not None and ended.state is CommandState.EXPIRED
    assert ended.result is not None and "never published" in ended.result.message


TOKENS = {
    "eng1": {"role": "engineer", "subject": "e1"},
    "eng2": {"role": "engineer", "subject": "e2"},
    "adm": {"role": "admin"},
    "h1": {"role": "hospital", "subject": "s1"},
}


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, SqliteStore, dict[str, str], dict[str, str]]]:
    tmp_path = tmp_path_factory.mktemp("remote-api")
    db = tmp_path / "service.db"
    store = SqliteStore(db)
    store.put_site(site("s1"))
    for ident, kind in (("us-000", DeviceKind.ULTRASOUND), ("endo-001", DeviceKind.ENDOSCOPE)):
        store.put_device(device(ident, kind, site_id="s1"))
    store.put_device(device("us-dark", DeviceKind.ULTRASOUND, site_id="s1"))
    store.put_engineer(engineer("e1", skills=frozenset(DeviceKind), capacity=50))
    store.put_engineer(engineer("e2", region="south"))
    for ident in ("us-000", "endo-001"):
        status = online(PresenceKind.EQUIPMENT, ident, T, T)
        store.put_presence(apply_status(None, status, GW, T)[0])
    tickets = {
        ident: desk.open_ticket(
            store, ident, Tier.GENERAL, "x", "hospital:s1", uuid.uuid4().hex, datetime.now(UTC)
        ).id
        for ident in ("us-000", "endo-001", "us-dark")
    }
    tokens = mint_tokens(tmp_path / "tokens.json", TOKENS)
    app = create_app(ApiSettings(store_url=f"sqlite:///{db}", tokens_file=tmp_path / "tokens.json"))
    with TestClient(app) as client:
        yield client, store, tokens, tickets
    store.close()


@pytest.mark.parametrize(
    ("who", "device_id", "body", "status", "says"),
    [
        (None, "us-000", {"command": "self_test"}, 401, "token"),
        ("eng2", "us-000", {"command": "self_test"}, 403, "assigned"),
        ("adm", "us-000", {"command": "self_test"}, 403, "assigned"),
        ("eng1", "us-000", {"command": "format_disk"}, 422, "unknown command"),
        ("eng1", "us-000", {"command": "reboot", "args": {"delay_s": -1}}, 422, "delay_s"),
        ("eng1", "us-000", {"command": "reboot", "args": {"force": True}}, 422, "force"),
        ("eng1", "endo-001", {"command": "probe_impedance_test"}, 422, "not for a endoscope"),
        ("eng1", "us-000", {"command": "self_test", "colour": 1}, 422, "colour"),
        ("eng1", "us-000", {"command": "self_test", "command_id": "a/b"}, 422, "command_id"),
        ("eng1", "us-000", {"command": "self_test", "expires_in_s": 1}, 422, "expires_in_s"),
        ("eng1", "us-dark", {"command": "self_test"}, 409, "no gateway"),
    ],
)
def test_bad_command_requests_are_refused(
    api: tuple[TestClient, SqliteStore, dict[str, str], dict[str, str]],
    who: str | None,
    device_id: str,
    body: dict[str, object],
    status: int,
    says: str,
) -> None:
    client, _, tokens, tickets = api
    headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
    answer = client.post(f"/tickets/{tickets[device_id]}/commands", json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_the_same_id_for_another_command_conflicts_and_lookups_are_scoped(
    api: tuple[TestClient, SqliteStore, dict[str, str], dict[str, str]],
) -> None:
    client, _, tokens, tickets = api
    eng = {"Authorization": f"Bearer {tokens['eng1']}"}
    url = f"/tickets/{tickets['us-000']}/commands"
    assert (
        client.post(url, json={"command": "self_test", "command_id": "k"}, headers=eng).status_code
        == 202
    )
    again = client.post(url, json={"command": "reboot", "command_id": "k"}, headers=eng)
    assert again.status_code == 409
    other = f"/tickets/{tickets['endo-001']}/commands/k"
    assert client.get(other, headers=eng).status_code == 404
    assert client.get(f"{url}/k", headers=eng).json()["state"] == "queued"
    assert client.get("/tickets/nope/commands", headers=eng).status_code == 404
    hospital = {"Authorization": f"Bearer {tokens['h1']}"}
    assert client.get(f"/gateways/{GW}", headers=hospital).status_code == 403
    assert client.get("/devices/us-dark/presence", headers=eng).status_code == 404
    assert client.get("/devices/us-000/presence", headers=hospital).json()["state"] == "online"
