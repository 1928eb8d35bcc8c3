"""Each process's /metrics, scraped over HTTP from the real `vigil … run` processes.

Real Mosquitto, SQLite storage: `vigil ingest run --no-rules`, `vigil rules run` and
`vigil service run` each serve their own metrics; a good batch and a poison payload go through,
and the named metrics exist and move. Their JSON logs say what each connected to at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from contract import Batch, Reading, encode_batch
from contract.topics import alert_topic, batch_topic
from infra.time_us import now_us
from tests.metrics.harness import Running, Scrape, running
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

MIN = 60_000_000
RULE = (
    "rules:\n  - {id: wet, kind: threshold, severity: warning, source: s, "
    "scope: {metric: exudate}, raise: {above: 85}, clear: {below: 20}}\n"
)
GATEWAY = "gw-metrics"


@pytest.fixture
def env(mosquitto: PrivateMosquitto, tmp_path: Path) -> dict[str, str]:
    rule_file = tmp_path / "wet.yaml"
    rule_file.write_text(RULE)
    return {
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{tmp_path / 'vigil.db'}",
        "VIGIL_RULES__PACKS": "[]",
        "VIGIL_RULES__RULE_FILES": f'["{rule_file}"]',
        "VIGIL_RULES__SNAPSHOT_PATH": str(tmp_path / "rules.snap"),
        "VIGIL_RULES__TICK_INTERVAL_S": "1",
        "VIGIL_SERVICE__STORE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "VIGIL_SERVICE__TICK_INTERVAL_S": "1",
        "VIGIL_METRICS__HOST": "127.0.0.1",
    }


@pytest.fixture
def processes(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Running]]:
    with (
        running(["ingest", "run", "--no-rules"], env, tmp_path, "ingest") as ingest,
        running(["rules", "run"], env, tmp_path, "rules") as rules,
        running(["service", "run"], env, tmp_path, "service") as service,
    ):
        for process in (ingest, rules, service):
            process.wait_scraped()
        yield {"ingest": ingest, "rules": rules, "service": service}


def _wet_batch() -> Batch:
    start = now_us() - 10 * MIN  # inside ingest's timestamp window
    readings = tuple(Reading("p1", "exudate", 90.0, "%", start + m * MIN, m) for m in range(3))
    return Batch(GATEWAY, 0, readings)


async def _until(process: Running, check: str, predicate: object) -> Scrape:
    """Scrape ``process`` until ``predicate(scrape)`` holds; the last scrape."""
    last: list[Scrape] = []

    def holds() -> bool:
        last[:] = [process.scrape()]
        return bool(predicate(last[0]))  # type: ignore[operator]

    await wait_until_async(holds, 60.0, check, poll_s=0.2)
    return last[0]


@pytest.mark.services
async def test_every_process_serves_metrics_that_move(
    processes: dict[str, Running], mosquitto: PrivateMosquitto
) -> None:
    ingest, rules, service = processes["ingest"], processes["rules"], processes["service"]
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="metrics-test") as client:
        # Every consumer is subscribed (their loops say so) before anything is published.
        for process, consumer in ((ingest, "ingest"), (rules, "rules worker")):
            await _until(
                process,
                f"{consumer} connected",
                lambda s, c=consumer: s.value("vigil_consume_connected", consumer=c) == 1,
            )
        await _until(
            service,
            "service connected",
            lambda s: s.value("vigil_consume_connected", consumer="service worker") == 1,
        )
        await client.publish(batch_topic(GATEWAY), encode_batch(_wet_batch()), qos=1)
        await client.publish(batch_topic(GATEWAY), b"\x00 not a batch", qos=1)
        await client.publish(alert_topic("p9"), b"{not an alert", qos=1)

        s = await _until(
            ingest,
            "ingest stored the batch and dead-lettered the poison",
            lambda s: (
                s.value("vigil_ingest_readings_stored_total") == 3
                and s.total("vigil_ingest_dead_letters_total") >= 1
            ),
        )
        assert s.value("vigil_ingest_batches_new_total") == 1
        assert s.value("vigil_ingest_write_seconds_count") >= 1
        assert s.value("vigil_consume_messages_total", consumer="ingest", outcome="committed") == 2
        assert s.value("vigil_ingest_storage_outages_total") == 0
        assert "vigil_consume_outages" in s.families

        s = await _until(
            rules,
            "rules evaluated the batch and skipped the poison",
            lambda s: (
                s.value("vigil_rules_readings_evaluated_total") == 3
                and s.total("vigil_consume_dead_letters_total", consumer="rules worker") == 1
            ),
        )
        assert s.value("vigil_rules_active_alerts", rule="wet") == 1
        assert s.value("vigil_rules_alert_events_total") == 1
        assert s.value("vigil_rules_lease_held", holder="vigil-rules-1") == 1
        s = await _until(
            rules,
            "the alert published",
            lambda s: (
                s.value("vigil_rules_alerts_published_total") == 1
                and s.value("vigil_rules_unpublished_alerts") == 0
            ),
        )

        s = await _until(
            service,
            "the alert became a ticket",
            lambda s: (
                s.value("vigil_service_tickets_opened_total") == 1
                and s.total("vigil_service_open_tickets") == 1
            ),
        )
        assert s.total("vigil_consume_dead_letters_total", consumer="service worker") == 1
        (labels,) = [ls for ls in s.labels("vigil_service_open_tickets")]
        assert labels["tier"] == "general" and labels["state"] in {"open", "dispatched"}
        assert s.value("vigil_service_breached_open_tickets", tier="general", clock="respond") == 0
        assert "vigil_service_notification_attempts" in s.families
        assert "vigil_service_escalations" in s.families

    _assert_start_lines(ingest, rules, service)
    for process in (ingest, rules, service):
        assert process.plain_lines() == [], process.tail()  # every line of the log is JSON


def _assert_start_lines(ingest: Running, rules: Running, service: Running) -> None:
    """Each says where it consumes (broker, TLS, client id, topic) and which store it opened."""
    for process, component, client_id in (
        (ingest, "ingest", "vigil-ingest-1"),
        (rules, "rules worker", "vigil-rules-1"),
        (service, "service worker", "vigil-service-1"),
    ):
        consuming = [
            r
            for r in process.records()
            if r.get("component") == component and "subscribed to" in r["message"]
        ]
        assert len(consuming) == 1, process.tail()
        (line,) = consuming
        assert line["logger"] == "vigil.start" and line["level"] == "INFO"
        assert line["client_id"] == client_id and line["tls"] is False
        assert line["broker"].startswith("127.0.0.1:") and line["topic"]
    storage = [r for r in ingest.records() if r.get("component") == "ingest" and "url" in r]
    assert storage and storage[0]["url"].startswith("sqlite:///")
    dead = [r for r in rules.records() if r.get("consumer") == "rules worker"]
    assert len(dead) == 1 and dead[0]["level"] == "WARNING" and dead[0]["error"], rules.tail()
