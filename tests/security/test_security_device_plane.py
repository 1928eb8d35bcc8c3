"""The device plane's identity end to end: real processes, real Mosquitto, TLS, certificates.

Each process is `vigil … run`, configured only by VIGIL_… variables, presenting its own
certificate: the broker's ACL decides what an identity may publish and read, ingest binds the
identity to the data (the topic's gateway, the installed base's site), and the gateway takes a
confirmation only from ingest (ACL) and only with its MAC.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from contract import Confirmation, decode_batch, encode_batch, encode_confirmation
from contract.topics import batch_topic, confirm_topic
from infra.confirm_keys import gateway_key, new_key, read_key
from tests.security.device_plane import FOREIGN, Plane, batch, running_plane, simulated_readings
from tests.security.tls_broker import PERMISSIVE_ACL, client
from tests.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.services


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    with running_plane(tmp_path) as running:
        yield running


def _exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_readings_cross_the_tls_plane_end_to_end(plane: Plane) -> None:
    plane.start_ingest()
    gateway = plane.start_gateway("gw-a", "--exit-when-drained")
    # It exits 0 only once its outbox is empty: ingest confirmed everything, MAC and all.
    assert _exit_code(gateway, 30) == 0, plane.logged("gw-a")[-3000:]
    assert plane.store.reading_count() == simulated_readings()
    assert plane.store.dead_letter_count() == 0
    assert "ignoring a confirmation" not in plane.logged("gw-a")


async def test_a_gateway_cannot_deliver_a_batch_on_another_gateways_topic(plane: Plane) -> None:
    plane.start_ingest()
    async with client(plane.tls, plane.tls.context("gw-a"), "gw-a-rogue") as gw_a:
        # gw-a poses as gw-b, payload and topic agreeing: only the broker's ACL can stop it.
        await gw_a.publish(batch_topic("gw-b"), encode_batch(batch("gw-b", 1, FOREIGN)), qos=1)
        await gw_a.publish(batch_topic("gw-a"), encode_batch(batch("gw-a", 1, "patch-0000")), qos=1)
    await wait_until_async(lambda: plane.store.reading_count() >= 1, 20, what="gw-a's canary")
    await asyncio.sleep(0.3)  # a deliberate gap: a late forged batch would land in it
    assert plane.stored_devices() == {"patch-0000"}
    assert plane.store.dead_letter_count() == 0  # it never even reached ingest


async def test_a_reading_of_another_sites_device_is_dead_lettered(plane: Plane) -> None:
    plane.start_ingest()
    async with client(plane.tls, plane.tls.context("gw-a"), "gw-a-mixed") as gw_a:
        mixed = batch("gw-a", 1, "patch-0000", FOREIGN, "patch-0001")
        await gw_a.publish(batch_topic("gw-a"), encode_batch(mixed), qos=1)
    await wait_until_async(lambda: plane.store.dead_letter_count() >= 1, 20, what="dead letter")
    await wait_until_async(lambda: plane.store.reading_count() >= 2, 20, what="the others")
    assert plane.stored_devices() == {"patch-0000", "patch-0001"}
    [letter] = plane.store.dead_letters()
    assert (letter.gateway_id, letter.batch_seq) == ("gw-a", 1)
    assert FOREIGN in letter.reason and "'site-b'" in letter.reason


async def _seen_twice(plane: Plane, forge: list[bytes], forger: str) -> None:
    """Watch gw-a's batch 1 go out, publish ``forge`` as ``forger`` on gw-a's confirm topic,
    and see batch 1 resent twice more: nothing was forgotten. (Twice: a forgery taken just
    after the first resend would still prevent the second.)"""
    seen = asyncio.Event()
    again = asyncio.Event()
    forged = asyncio.Event()
    resent = 0

    async def watch(sub: aiomqtt.Client) -> None:
        nonlocal resent
        async for message in sub.messages:
            assert isinstance(message.payload, bytes)
            if decode_batch(message.payload).batch.batch_seq != 1:
                continue
            seen.set()
            if forged.is_set():
                resent += 1
                if resent == 2:
                    again.set()

    ingest_ctx, forger_ctx = plane.tls.context("vigil-ingest"), plane.tls.context(forger)
    async with (
        client(plane.tls, ingest_ctx, "plane-watcher") as watcher,
        client(plane.tls, forger_ctx, f"{forger}-forger") as rogue,
    ):
        await watcher.subscribe(batch_topic("gw-a"), qos=1)
        watching = asyncio.create_task(watch(watcher))
        plane.start_gateway("gw-a", "--exit-when-drained")
        await asyncio.wait_for(seen.wait(), 20)
        for payload in forge:
            await rogue.publish(confirm_topic("gw-a"), payload, qos=1)
        forged.set()
        await asyncio.wait_for(again.wait(), 20)  # resent: still unconfirmed
        watching.cancel()


async def test_only_ingest_can_make_a_gateway_forget_by_acl(plane: Plane) -> None:
    # gw-b sends the *right* MAC (as if it had stolen the key): only the ACL can stop it.
    key = read_key(plane.tls.pki.confirm_key_path("gw-a"))
    right = encode_confirmation(Confirmation.of("gw-a", range(1, 100)), key)
    await _seen_twice(plane, [right], "gw-b")
    assert "ignoring a confirmation" not in plane.logged("gw-a")  # it never arrived
    plane.start_ingest()
    assert _exit_code(plane.procs["gw-a"], 30) == 0, plane.logged("gw-a")[-3000:]
    assert plane.store.reading_count() == simulated_readings()


async def test_only_ingest_can_make_a_gateway_forget_by_mac(tmp_path: Path) -> None:
    # The ACL gone wrong: anyone may publish on anyone's confirm topic; the MAC is what is left.
    seqs = range(1, 100)
    forgeries = [
        encode_confirmation(Confirmation.of("gw-a", seqs)),  # no MAC
        encode_confirmation(Confirmation.of("gw-a", seqs), gateway_key(new_key(), "gw-a")),
    ]
    with running_plane(tmp_path, acl_text=PERMISSIVE_ACL) as plane:
        await _seen_twice(plane, forgeries, "gw-b")
        await wait_until_async(
            lambda: all(why in plane.logged("gw-a") for why in ("carries no MAC", "MAC is wrong")),
            10,
            what="both forgeries refused",
        )
        plane.start_ingest()
        assert _exit_code(plane.procs["gw-a"], 30) == 0, plane.logged("gw-a")[-3000:]
        assert plane.store.reading_count() == simulated_readings()


def test_a_revoked_gateway_certificate_is_refused(plane: Plane) -> None:
    plane.tls.pki.revoke("gw-c")
    plane.tls.broker.stop()  # Mosquitto reads its CRL when the listener starts
    plane.tls.broker.start()
    plane.start_ingest()
    gateway = plane.start_gateway("gw-c", "--exit-when-drained")
    # The broker refuses the handshake; the uplink gives up on the CONNACK after its timeout
    # (10 s), counts a lost uplink and retries with its outbox intact.
    wait_until(lambda: "uplink lost" in plane.logged("gw-c"), 25, "the revoked gateway refused")
    assert "certificate revoked" in plane.logged("gw-c")
    assert gateway.poll() is None  # still holding everything, retrying
    assert plane.store.reading_count() == 0
