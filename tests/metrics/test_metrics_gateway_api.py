"""The gateway's and the REST API's /metrics, scraped over HTTP from real `vigil` processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.profiles import READINGS_PER_FRAME
from service.tokens import TokenRegistry
from tests.metrics.harness import Running, Scrape, running
from tests.servers import PrivateMosquitto, free_port, wait_for_port
from tests.waiting import wait_until

GATEWAY = "gw-scraped"
PATCHES, TICKS = 2, 5


def _until(process: Running, what: str, predicate: object) -> Scrape:
    """Scrape ``process`` until ``predicate(scrape)`` holds; the last scrape."""
    last: list[Scrape] = []

    def holds() -> bool:
        last[:] = [process.scrape()]
        return bool(predicate(last[0]))  # type: ignore[operator]

    wait_until(holds, 60.0, what, poll_s=0.2)
    return last[0]


@pytest.mark.services
def test_gateway_metrics_follow_the_outbox_and_the_confirmations(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    env = {
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_GATEWAY__ID": GATEWAY,
        "VIGIL_GATEWAY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
        "VIGIL_GATEWAY__BRIDGE_EQUIPMENT": "false",
        "VIGIL_SIMULATOR__TICKS": str(TICKS),
        "VIGIL_SIMULATOR__TICK_WALL_S": "0.01",
        "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{tmp_path / 'vigil.db'}",
        "VIGIL_RULES__SNAPSHOT_PATH": str(tmp_path / "rules.snap"),
        "VIGIL_METRICS__HOST": "127.0.0.1",
    }
    args = ["gateway", "run", "--simulate-patches", str(PATCHES)]
    with running(args, env, tmp_path, "gateway") as gateway:
        gateway.wait_scraped()
        # No ingest yet: the readings wait in the outbox, unconfirmed, and grow old.
        s = _until(
            gateway,
            "readings waiting in the outbox",
            lambda s: (
                s.value("vigil_gateway_outbox_readings") > 0
                and s.value("vigil_gateway_outbox_oldest_pending_age_seconds") > 0
            ),
        )
        assert s.value("vigil_gateway_readings_confirmed_total") == 0
        assert s.value("vigil_gateway_outbox_bound_readings") > 0
        # Ingest with its rules in process: one endpoint for both.
        with running(["ingest", "run"], env, tmp_path, "ingest") as ingest:
            ingest.wait_scraped()
            # The simulated patches' frames trickle in over BLE: wait for all of them, not
            # for the first ones to be confirmed while the rest are still on the air.
            s = _until(
                gateway,
                "ingest confirmed every reading",
                lambda s: (
                    s.value("vigil_gateway_outbox_readings") == 0
                    and s.value("vigil_gateway_readings_confirmed_total")
                    == s.total("vigil_gateway_readings_in_total")
                    == PATCHES * READINGS_PER_FRAME * TICKS
                ),
            )
            stored = ingest.scrape().value("vigil_ingest_readings_stored_total")
            rules = _until(
                ingest,
                "the in-process rules evaluated every stored reading",
                lambda r: r.value("vigil_rules_readings_evaluated_total") == stored,
            )
    assert rules.value("vigil_rules_lease_held", holder="in-process") == 1
    assert rules.value("vigil_ingest_write_seconds_count") >= 1
    assert s.value("vigil_gateway_readings_confirmed_total") == stored
    assert s.total("vigil_gateway_readings_in_total") == stored
    assert s.value("vigil_gateway_confirm_latency_seconds_count") >= 1
    assert s.value("vigil_gateway_confirm_latency_seconds_sum") > 0
    assert s.value("vigil_gateway_outbox_oldest_pending_age_seconds") == 0
    assert s.value("vigil_gateway_outbox_open_batches") == 0
    assert "vigil_gateway_outbox_dropped_readings" in s.families
    (uplink,) = [r for r in gateway.records() if "publishes" in r]
    assert uplink["client_id"] == f"vigil-gateway-{GATEWAY}" and uplink["tls"] is False
    assert uplink["publishes"] == f"vigil/v1/gateways/{GATEWAY}/batches"


@pytest.mark.services
def test_api_metrics_count_requests_by_route_template_and_status(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    secret, _ = TokenRegistry(tokens).mint("admin", None)
    port = free_port()
    env = {
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_SERVICE__TOKENS_FILE": str(tokens),
        "VIGIL_SERVICE__STORE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "VIGIL_METRICS__HOST": "127.0.0.1",
    }
    args = ["service", "api", "--port", str(port)]
    with running(args, env, tmp_path, "api") as api:
        api.wait_scraped()
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{base}/tickets", headers=auth).status_code == 200
        assert httpx.get(f"{base}/tickets").status_code == 401
        assert httpx.get(f"{base}/tickets/t-missing", headers=auth).status_code == 404
        for n in range(3):
            assert httpx.get(f"{base}/scanner/{n}", headers=auth).status_code == 404
        s = _until(
            api,
            "requests counted",
            lambda s: s.total("vigil_api_requests_total") >= 6,
        )
        records = api.records()
    assert api.plain_lines() == []  # uvicorn's own lines too are JSON
    assert s.value("vigil_api_requests_total", method="GET", route="/tickets", status="200") == 1
    assert s.value("vigil_api_requests_total", method="GET", route="/tickets", status="401") == 1
    assert (
        s.value(
            "vigil_api_requests_total", method="GET", route="/tickets/{ticket_id}", status="404"
        )
        == 1
    )
    # Paths no route knows share one series: a scanner cannot grow the label space.
    assert s.value("vigil_api_requests_total", method="GET", route="unmatched", status="404") == 3
    assert s.value("vigil_api_request_seconds_count", method="GET", route="/tickets") == 2
    assert s.value("vigil_api_requests_in_progress") == 0
    # SQLite serves one API process: its budgets are this process's, and none fell back.
    assert s.value("vigil_api_rate_budgets_shared") == 0
    assert s.value("vigil_api_rate_fallbacks_total") == 0
    (line,) = [r for r in records if r.get("component") == "api" and "listen" in r]
    assert line["listen"] == f"127.0.0.1:{port}" and line["readings"] == "none"
