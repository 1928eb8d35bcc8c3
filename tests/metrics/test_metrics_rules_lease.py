"""Two `vigil rules run` replicas on TimescaleDB: the lease holder shows in their metrics, and a
takeover after the holder is SIGKILLed moves them and is logged once, with who took it."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.logs import mask_url
from tests.metrics.harness import Running, running
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until

RULE = (
    "rules:\n  - {id: wet, kind: threshold, severity: warning, source: s, "
    "scope: {metric: exudate}, raise: {above: 85}, clear: {below: 20}}\n"
)


def _held(replica: Running, holder: str) -> float:
    return replica.scrape().value("vigil_rules_lease_held", holder=holder)


@pytest.mark.services
def test_the_lease_holder_and_a_takeover_show_in_metrics_and_logs(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    rule_file = tmp_path / "wet.yaml"
    rule_file.write_text(RULE)
    env = {
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_INGEST__STORAGE_URL": timescale_dsn,
        "VIGIL_RULES__PACKS": "[]",
        "VIGIL_RULES__RULE_FILES": f'["{rule_file}"]',
        "VIGIL_RULES__SNAPSHOT_PATH": str(tmp_path / "rules.snap"),
        "VIGIL_METRICS__HOST": "127.0.0.1",
    }
    with (
        running(["rules", "run", "--replica", "1"], env, tmp_path, "rules-1") as one,
        running(["rules", "run", "--replica", "2"], env, tmp_path, "rules-2") as two,
    ):
        one.wait_scraped()
        two.wait_scraped()
        replicas = {"vigil-rules-1": one, "vigil-rules-2": two}
        wait_until(
            lambda: sum(_held(r, h) for h, r in replicas.items()) == 1,
            60.0,
            "one replica holds the lease",
            poll_s=0.2,
        )
        holder = next(h for h, r in replicas.items() if _held(r, h) == 1)
        standby = next(h for h in replicas if h != holder)
        assert replicas[holder].scrape().value("vigil_rules_takeovers_total") == 1
        assert replicas[standby].scrape().value("vigil_rules_takeovers_total") == 0

        replicas[holder].process.kill()  # no goodbye: the database notices the session die
        wait_until(
            lambda: _held(replicas[standby], standby) == 1,
            60.0,
            "the standby takes the lease over",
            poll_s=0.2,
        )
        survivor = replicas[standby]
        assert survivor.scrape().value("vigil_rules_takeovers_total") == 1
        records = survivor.records()
    taken = [r for r in records if "taken by" in r["message"]]
    assert len(taken) == 1 and taken[0]["level"] == "WARNING", survivor.tail()
    assert standby in taken[0]["message"]
    (storage,) = [r for r in records if r.get("component") == "rules" and "mode" in r]
    assert storage["mode"] == "replica behind the lease"
    assert storage["url"] == mask_url(timescale_dsn)
