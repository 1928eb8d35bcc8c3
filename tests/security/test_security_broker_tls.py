"""The uplink broker, with the generated TLS config and ACLs, refuses what it must."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from infra.pki import Pki, Role
from tests.security.tls_broker import TlsBroker, client, start_tls_broker

pytestmark = pytest.mark.services


@pytest.fixture
def uplink() -> Iterator[TlsBroker]:
    tls = start_tls_broker()
    for cn in ("gw-a", "gw-b"):
        tls.pki.issue_client(cn, Role.GATEWAY)
    tls.pki.issue_client("vigil-ingest", Role.SERVICE)
    yield tls
    tls.broker.cleanup()


async def _refused(tls: TlsBroker, ctx: ssl.SSLContext | None, client_id: str) -> bool:
    """Whether connecting with ``ctx`` (None: plain TCP) fails."""
    try:
        async with aiomqtt.Client(
            "localhost",
            tls.port,
            identifier=client_id,
            tls_context=ctx,
            timeout=5,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as c:
            await c.publish("vigil/v1/gateways/gw-a/batches", b"x", qos=1)
    except (aiomqtt.MqttError, ssl.SSLError, OSError):
        return True
    return False


async def _received(sub: aiomqtt.Client, canary: bytes, within_s: float = 10.0) -> list[bytes]:
    """Payloads received up to and including ``canary`` (which must arrive in time)."""
    got: list[bytes] = []
    async with asyncio.timeout(within_s):
        async for message in sub.messages:
            assert isinstance(message.payload, bytes)
            got.append(message.payload)
            if message.payload == canary:
                return got
    raise AssertionError("subscription ended")


async def test_anonymous_plain_and_foreign_ca_clients_are_refused(
    uplink: TlsBroker, tmp_path: Path
) -> None:
    assert await _refused(uplink, None, "plain")  # no plain-TCP listener at all
    assert await _refused(uplink, uplink.context(None), "anonymous")  # TLS, no certificate
    other = Pki(tmp_path / "other")
    other.init("someone else's CA")
    other.issue_client("vigil-ingest", Role.SERVICE)
    assert await _refused(uplink, uplink.context("vigil-ingest", pki=other), "forged")
    assert not await _refused(uplink, uplink.context("gw-a"), "gw-a")


async def test_a_gateway_cannot_publish_on_another_gateways_topic(uplink: TlsBroker) -> None:
    async with (
        client(uplink, uplink.context("vigil-ingest"), "ingest") as ingest,
        client(uplink, uplink.context("gw-a"), "gw-a") as gw_a,
    ):
        await ingest.subscribe("vigil/v1/gateways/+/batches", qos=1)
        await gw_a.publish("vigil/v1/gateways/gw-b/batches", b"forged", qos=1)
        await gw_a.publish("vigil/v1/gateways/gw-a/batches", b"canary", qos=1)
        assert await _received(ingest, b"canary") == [b"canary"]


async def test_only_ingest_can_confirm_a_gateways_batches(uplink: TlsBroker) -> None:
    async with (
        client(uplink, uplink.context("gw-a"), "gw-a") as gw_a,
        client(uplink, uplink.context("gw-b"), "gw-b") as gw_b,
        client(uplink, uplink.context("vigil-ingest"), "ingest") as ingest,
    ):
        await gw_a.subscribe("vigil/v1/gateways/gw-a/confirms", qos=1)
        await gw_b.publish("vigil/v1/gateways/gw-a/confirms", b"forged-by-b", qos=1)
        await gw_a.publish("vigil/v1/gateways/gw-a/confirms", b"forged-by-self", qos=1)
        await ingest.publish("vigil/v1/gateways/gw-a/confirms", b"canary", qos=1)
        assert await _received(gw_a, b"canary") == [b"canary"]


async def test_a_gateway_cannot_read_another_gateways_confirmations(uplink: TlsBroker) -> None:
    async with (
        client(uplink, uplink.context("gw-b"), "gw-b") as gw_b,
        client(uplink, uplink.context("vigil-ingest"), "ingest") as ingest,
    ):
        await gw_b.subscribe("vigil/v1/gateways/+/confirms", qos=1)
        await ingest.publish("vigil/v1/gateways/gw-a/confirms", b"for-a", qos=1)
        await ingest.publish("vigil/v1/gateways/gw-b/confirms", b"canary", qos=1)
        assert await _received(gw_b, b"canary") == [b"canary"]


async def test_a_revoked_certificate_is_refused(uplink: TlsBroker) -> None:
    uplink.pki.issue_client("gw-c", Role.GATEWAY)
    assert not await _refused(uplink, uplink.context("gw-c"), "gw-c")
    uplink.pki.revoke("gw-c")
    # Mosquitto reads its CRL when the listener starts: revocation takes a restart or reload.
    uplink.broker.stop()
    uplink.broker.start()
    assert await _refused(uplink, uplink.context("gw-c"), "gw-c")
    assert not await _refused(uplink, uplink.context("gw-a"), "gw-a")


async def test_ingest_consumes_through_a_shared_subscription_under_the_acl(
    uplink: TlsBroker,
) -> None:
    async with (
        client(uplink, uplink.context("vigil-ingest"), "ingest") as ingest,
        client(uplink, uplink.context("gw-a"), "gw-a") as gw_a,
    ):
        await ingest.subscribe("$share/ingest/vigil/v1/gateways/+/batches", qos=1)
        await gw_a.publish("vigil/v1/gateways/gw-a/batches", b"canary", qos=1)
        assert await _received(ingest, b"canary") == [b"canary"]


async def test_a_gateway_cannot_consume_other_gateways_batches(uplink: TlsBroker) -> None:
    async with (
        client(uplink, uplink.context("gw-b"), "gw-b") as gw_b,
        client(uplink, uplink.context("gw-a"), "gw-a") as gw_a,
    ):
        await gw_b.subscribe("vigil/v1/gateways/+/batches", qos=1)
        await gw_b.subscribe("vigil/v1/gateways/gw-b/confirms", qos=1)
        await gw_a.publish("vigil/v1/gateways/gw-a/batches", b"private", qos=1)
        async with client(uplink, uplink.context("vigil-ingest"), "ingest") as ingest:
            await ingest.publish("vigil/v1/gateways/gw-b/confirms", b"canary", qos=1)
        assert await _received(gw_b, b"canary") == [b"canary"]


async def test_ingest_may_raise_a_gateways_alert_and_a_gateway_only_its_own(
    uplink: TlsBroker,
) -> None:
    uplink.pki.issue_client("vigil-service", Role.SERVICE)
    async with (
        client(uplink, uplink.context("vigil-service"), "service") as service,
        client(uplink, uplink.context("gw-a"), "gw-a") as gw_a,
        client(uplink, uplink.context("vigil-ingest"), "ingest") as ingest,
    ):
        await service.subscribe("vigil/v1/alerts/+", qos=1)
        await gw_a.publish("vigil/v1/alerts/gw-b", b"forged-by-a", qos=1)
        await gw_a.publish("vigil/v1/alerts/gw-a", b"own", qos=1)
        await ingest.publish("vigil/v1/alerts/gw-b", b"canary", qos=1)
        assert await _received(service, b"canary") == [b"own", b"canary"]
