"""Signed webhooks: signature, retries with backoff and a record of every attempt."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from contract.webhooks import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    WebhookVerifier,
    sign,
)
from service.model import Delivery
from service.notify import HttpSender, RetryPolicy, Webhook, deliver
from service.store import SqliteStore

SECRET = b"s3cret"
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


def signed(event_id: str, body: bytes = b"{}", event: str = "ticket.opened") -> dict[str, str]:
    stamp = int(NOW.timestamp())
    return {
        TIMESTAMP_HEADER: str(stamp),
        EVENT_ID_HEADER: event_id,
        EVENT_HEADER: event,
        SIGNATURE_HEADER: sign(SECRET, stamp, event_id, event, body),
    }


def test_signature_round_trip_and_replay_window() -> None:
    now = NOW.timestamp()
    verifier = WebhookVerifier(SECRET)
    assert verifier.verify(signed("e1"), b"{}", now).event_id == "e1"
    cases = [
        (signed("e2"), b"{ }", now, "signature"),  # body changed
        (signed("e3"), b"{}", now + 6 * 60, "outside"),  # stale
        ({**signed("e4"), EVENT_HEADER: "ticket.closed"}, b"{}", now, "signature"),
        ({}, b"{}", now, "missing"),
    ]
    for headers, body, at, reason in cases:
        with pytest.raises(WebhookRejected, match=reason):
            verifier.verify(headers, body, at)
    with pytest.raises(WebhookRejected, match="signature"):
        WebhookVerifier(b"other").verify(signed("e5"), b"{}", now)


def test_a_replay_is_rejected_with_the_same_id_and_with_a_new_one() -> None:
    now = NOW.timestamp()
    verifier = WebhookVerifier(SECRET)
    captured = signed("ticket-1:ticket.dispatched:engineer:e1")
    verifier.verify(captured, b"{}", now)
    with pytest.raises(WebhookRejected, match="replay"):
        verifier.verify(captured, b"{}", now + 10)
    # The id is signed: renaming it to get past de-duplication breaks the signature.
    renamed = {**captured, EVENT_ID_HEADER: "ticket-1:ticket.dispatched:engineer:e1:again"}
    with pytest.raises(WebhookRejected, match="signature"):
        verifier.verify(renamed, b"{}", now + 10)


def test_backoff_grows_and_caps() -> None:
    policy = RetryPolicy(base=1, factor=2, cap=5)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


class Scripted:
    """A fake sender answering with scripted statuses (an exception class means raise it)."""

    def __init__(self, *answers: int | type[Exception]) -> None:
        self.answers = list(answers)
        self.calls: list[Mapping[str, str]] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.calls.append(headers)
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            return answer
        raise answer("refused")


async def run(
    sender: Scripted, policy: RetryPolicy | None = None
) -> tuple[bool, list[Delivery], list[float]]:
    recorded: list[Delivery] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    ok = await deliver(
        Webhook("http://hook", SECRET),
        "ev1",
        "ticket.opened",
        {"id": "t1"},
        send=sender,
        record=recorded.append,
        clock=lambda: NOW,
        sleep=sleep,
        policy=policy or RetryPolicy(),
    )
    return ok, recorded, slept


async def test_retries_transient_failures_then_succeeds() -> None:
    ok, recorded, slept = await run(Scripted(ConnectionRefusedError, 503, 200))
    assert ok
    assert [(d.attempt, d.status, d.ok) for d in recorded] == [
        (1, None, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert "ConnectionRefusedError" in recorded[0].error
    assert slept == [1.0, 2.0]


async def test_permanent_failure_stops_at_once() -> None:
    ok, recorded, slept = await run(Scripted(400))
    assert not ok and len(recorded) == 1 and slept == []


async def test_gives_up_after_the_last_attempt() -> None:
    ok, recorded, slept = await run(Scripted(500, 500, 500), RetryPolicy(attempts=3))
    assert not ok and len(recorded) == 3 and slept == [1.0, 2.0]


class _Hook(BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).statuses.pop(0))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Hook.statuses = [502, 204]
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


async def test_real_http_delivery_is_signed_and_recorded(receiver: str) -> None:
    store = SqliteStore()

    async def no_wait(_: float) -> None:
        return None

    async with HttpSender(timeout=5) as send:
        ok = await deliver(
            Webhook(receiver, SECRET),
            "ev9",
            "ticket.escalated",
            {"ticket": "t1"},
            send=send,
            record=store.record_delivery,
            sleep=no_wait,
        )
    assert ok
    assert [(d.attempt, d.status) for d in store.deliveries("ev9")] == [(1, 502), (2, 204)]
    headers, body = _Hook.received[-1]
    assert WebhookVerifier(SECRET).verify(headers, body).event == "ticket.escalated"
