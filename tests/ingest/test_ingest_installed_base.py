"""Ingest binds identity to data: a gateway may report only the devices of its own site."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import aiomqtt
import pytest

from contract import AlertEvent, AlertTransition, Batch, Reading, decode_alert, encode_batch
from contract.topics import alert_topic, batch_topic
from infra.installed_base import (
    InstalledBaseError,
    InstalledBaseFile,
    parse_installed_base,
)
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import now_us
from ingest.messages import decode_group
from ingest.unregistered_alarm import RULE_ID, UnregisteredAlarm
from ingest.worker import IngestSettings, IngestWorker

REGISTRY = """
gateways:
  gw-a: site-a
  gw-b: site-b
devices:
  patch-a1: {site: site-a, kind: patch}
  patch-a2: {site: site-a}
  patch-b1: {site: site-b, kind: patch}
"""


def reading(device: str, seq: int) -> Reading:
    return Reading(device, "wound_temp", 31.5, "degC", now_us() - 60_000_000 + seq, seq)


def message(batch: Batch, topic: str | None = None, mid: int = 1) -> aiomqtt.Message:
    return aiomqtt.Message(
        topic or batch_topic(batch.gateway_id), encode_batch(batch), 1, False, mid, None
    )


def write(path: Path, text: str) -> None:
    """Replace ``path`` atomically, with a changed mtime even on a coarse clock."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_gateway_may_report_only_devices_of_its_site() -> None:
    base = parse_installed_base(REGISTRY)
    assert base.problem("gw-a", "patch-a1") is None
    assert base.problem("gw-a", "patch-a2") is None
    other_site = base.problem("gw-a", "patch-b1")
    assert other_site is not None and "'site-b'" in other_site and "'site-a'" in other_site
    assert "not in the installed base" in (base.problem("gw-a", "patch-zz") or "")
    assert "gateway 'gw-x'" in (base.problem("gw-x", "patch-a1") or "")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("gateways: [gw-a]", "gateways"),
        ("devices: {d1: {kind: patch}}", "devices.d1.site"),
        ("devices: {d1: {site: s, colour: red}}", "colour"),
        ("devices: {d1: {site: s, kind: toaster}}", "kind"),
        ("gateways: {gw-a: site-a", "not YAML"),
        ("surprise: 1", "surprise"),
    ],
)
def test_a_malformed_registry_is_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(InstalledBaseError, match=complaint):
        parse_installed_base(text)


def test_json_is_read_too_and_the_dump_reads_back() -> None:
    base = parse_installed_base(REGISTRY)
    again = parse_installed_base(base.dump())
    assert again == base
    assert json.loads(base.dump())["devices"]["patch-a1"] == {"site": "site-a", "kind": "patch"}


def test_the_file_is_reloaded_when_it_changes_and_a_broken_change_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "installed.yaml"
    with pytest.raises(InstalledBaseError, match="No such file"):
        InstalledBaseFile(path)  # refuse to start without the registry that was asked for
    write(path, REGISTRY)
    registry = InstalledBaseFile(path)
    assert registry.current().problem("gw-a", "patch-new") is not None
    write(path, REGISTRY + "  patch-new: {site: site-a}\n")
    assert registry.current().problem("gw-a", "patch-new") is None
    assert registry.reloads == 1
    caplog.set_level(logging.ERROR, logger="infra.installed_base")
    write(path, "devices: {oops")
    assert registry.current().problem("gw-a", "patch-new") is None  # the last good one
    assert registry.current().problem("gw-a", "patch-new") is None
    assert len([r for r in caplog.records if "keeping the last good" in r.getMessage()]) == 1


def test_foreign_readings_are_dead_lettered_alone_and_counted_per_gateway() -> None:
    base = parse_installed_base(REGISTRY)
    mixed = Batch(
        "gw-a",
        7,
        (reading("patch-a1", 1), reading("patch-b1", 2), reading("patch-zz", 3)),
    )
    clean = Batch("gw-b", 1, (reading("patch-b1", 4),))
    group = decode_group([message(mixed), message(clean, mid=2)], now_us(), None, base)
    assert [(b.gateway_id, [r.device_id for r in b.readings]) for b in group.batches] == [
        ("gw-a", ["patch-a1"]),
        ("gw-b", ["patch-b1"]),
    ]
    assert group.batches[0].batch_seq == 7  # still confirmed as the batch it was
    assert group.letter_kinds == {"unregistered": 2}
    assert group.unregistered == {"gw-a": 2}
    letters = {json.loads(x.payload)["device_id"]: x for x in group.letters}
    assert "installed at site 'site-b'" in letters["patch-b1"].reason
    assert "not in the installed base" in letters["patch-zz"].reason
    assert {(x.gateway_id, x.batch_seq) for x in letters.values()} == {("gw-a", 7)}


def test_without_a_registry_every_device_passes() -> None:
    batch = Batch("gw-a", 1, (reading("anything-at-all", 1),))
    group = decode_group([message(batch)], now_us())
    assert len(group.batches[0].readings) == 1 and not group.letters


def test_the_alarm_raises_once_per_window_per_gateway() -> None:
    clock = [0.0]
    alarm = UnregisteredAlarm(threshold=10, window_s=3600.0, clock=lambda: clock[0])
    assert alarm.note("gw-a", 9, "why", 1) is None
    clock[0] = 100.0
    event = alarm.note("gw-a", 1, "device x is installed elsewhere", 2)
    assert event is not None
    assert (event.device_id, event.rule_id, event.transition) == (
        "gw-a",
        RULE_ID,
        AlertTransition.RAISED,
    )
    assert event.evidence["unregistered_readings"] == 10
    assert event.evidence["example"] == "device x is installed elsewhere"
    clock[0] = 2_000.0
    assert alarm.note("gw-a", 50, "why", 3) is None  # once per window
    assert alarm.note("gw-b", 9, "why", 4) is None  # counted per gateway
    clock[0] = 3_800.0  # the first 10 have left the window, the 50 are still in it
    assert alarm.in_window("gw-a") == 50
    assert alarm.note("gw-a", 1, "why", 5) is not None  # an hour on, still going: again


class _Publisher:
    """Records what the worker publishes (the client's part it uses)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.sent.append((topic, payload))


async def test_the_worker_stores_the_registered_and_alerts_on_a_persistent_offender(
    tmp_path: Path,
) -> None:
    registry = tmp_path / "installed.yaml"
    write(registry, REGISTRY)
    store = SQLiteStore(str(tmp_path / "ingest.db"))
    store.migrate()
    settings = IngestSettings(installed_base_file=registry, unregistered_alert_after=3)
    worker = IngestWorker(settings, store)
    try:
        first = Batch("gw-a", 1, (reading("patch-a1", 1), reading("patch-b1", 2)))
        second = Batch("gw-a", 2, (reading("patch-b1", 3), reading("patch-b1", 4)))
        confirmed = await worker.handle([message(first), message(second, mid=2)])
        assert [c.batch_seqs for c in confirmed] == [(1, 2)]  # both final: confirmed
        assert store.reading_count() == 1
        assert len(store.dead_letters()) == 3
        c = worker.counters
        assert c.value("vigil_ingest_readings_unregistered_total", gateway_id="gw-a") == 3
        assert c.value("vigil_ingest_dead_letters_total", kind="unregistered") == 3
        client = _Publisher()
        await worker.publish_alerts(client)  # type: ignore[arg-type]
        assert [topic for topic, _ in client.sent] == [alert_topic("gw-a")]
        alert: AlertEvent = decode_alert(client.sent[0][1])
        assert alert.rule_id == RULE_ID and alert.evidence["unregistered_readings"] == 3
        await worker.publish_alerts(client)  # type: ignore[arg-type]
        assert len(client.sent) == 1  # published once
    finally:
        store.close()
