"""The notification sender: empties the outbox into webhooks, MQTT and e-mail, at least once.

Notifications are written to the outbox in the transaction that changes the ticket; this loop
delivers each (same event id on every try, receivers dedupe on it), records every attempt and
moves the item on: done, pending with a later retry, or failed after the last one. A crash
between the commit and the send delays a notification but never loses it.

MQTT notifications go out on the alert consumer's connection and wait while it is down. A
storage outage is logged once; the loop keeps polling, and a delivery already made is recorded
once the store is back instead of being sent again. Attempts that end while a record is being
written are recorded together in the next transaction: an opened ticket's notifications cost
the store one commit, not one each, beside the worker's ticket commits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import aiomqtt

from infra.consume import Outage, hold_until_done
from infra.errors import StorageUnavailable
from service import email
from service.model import Channel, Delivery, OutboxItem, OutboxStatus
from service.notifications import Notification, mqtt_body, wall_clock
from service.notify import HttpSender, RetryPolicy, Sender, Webhook, attempt, worth_retrying
from service.store import ServiceStore
from service.worker_settings import WorkerSettings

log = logging.getLogger(__name__)
# An attempt made, the item as it moves on, and the future its task waits on till recorded.
Unrecorded = tuple[Delivery, OutboxItem, "asyncio.Future[None]"]
_OUTCOMES = {OutboxStatus.DONE: "delivered", OutboxStatus.PENDING: "retry"}


class NotificationSender:
    """Delivers the outbox while ``running()`` is entered; ``wake()`` after queueing more."""

    def __init__(
        self, settings: WorkerSettings, store: ServiceStore, *, sender: Sender | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.sender = sender
        self.outage = Outage("service sender: storage")
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Keys whose attempt ended while the outbox was being read: that read may predate the
        # attempt's record, so its copy of the item is stale and must not be sent again.
        self._settled: set[str] = set()
        # Attempts by (channel, outcome: delivered, retry, failed), for metrics.
        self.attempts: collections.Counter[tuple[str, str]] = collections.Counter()
        # Attempts waiting to be recorded, and the task recording them.
        self._unrecorded: list[Unrecorded] = []
        self._recorder: asyncio.Task[None] | None = None

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of every notification, webhook or MQTT."""
        c = self.settings.notify
        return RetryPolicy(c.attempts, c.backoff_s, 2.0, c.backoff_cap_s)

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    def use_client(self, client: aiomqtt.Client | None) -> None:
        """The MQTT connection to publish on, or None while there is none."""
        self._client = client
        if client is not None:
            self.wake()  # MQTT notifications held while disconnected

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Deliver in the background for as long as the block runs."""
        async with contextlib.AsyncExitStack() as stack:
            if self.sender is None:
                self.sender = await stack.enter_async_context(HttpSender())
            stack.callback(self._cancel_inflight)
            stack.callback(self._cancel_recorder)
            loop = asyncio.create_task(self._send_forever())
            stack.callback(loop.cancel)
            yield

    async def drain(self) -> None:
        """Wait until the outbox has nothing pending (needs ``running()``, and MQTT up)."""
        while True:
            self.wake()
            try:
                idle = not await asyncio.to_thread(self.store.pending_notifications, 1)
            except StorageUnavailable:
                idle = False  # cannot tell: not drained
            if idle and not self._inflight:
                return
            await asyncio.sleep(0.02)

    def _cancel_inflight(self) -> None:
        for task in self._inflight.values():
            task.cancel()

    def _cancel_recorder(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()

    async def _due(self) -> list[OutboxItem]:
        """Pending items, or none while the store is out of reach (logged once per outage)."""
        try:
            items = await asyncio.to_thread(self.store.pending_notifications, 500)
        except StorageUnavailable as exc:
            self.outage.failed(exc, self.settings.outbox_poll_s)
            return []
        except Exception:
            log.exception("could not read the notification outbox; retrying")
            return []
        self.outage.recovered()
        return items

    async def _send_forever(self) -> None:
        poll = self.settings.outbox_poll_s
        while True:
            self._wake.clear()
            self._settled.clear()
            items = await self._due()
            now = wall_clock()
            wait = poll
            for item in items:
                if item.key in self._inflight or item.key in self._settled:
                    continue
                if item.channel is Channel.MQTT and self._client is None:
                    continue  # held until the broker is back (the connect wakes this loop)
                if item.next_at > now:
                    wait = min(wait, (item.next_at - now).total_seconds())
                    continue
                task = asyncio.create_task(self._attempt(item))
                self._inflight[item.key] = task
                task.add_done_callback(functools.partial(self._done, item.key))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))

    def _done(self, key: str, _: object) -> None:
        self._inflight.pop(key, None)
        self._settled.add(key)
        self.wake()

    async def _attempt(self, item: OutboxItem) -> None:
        """One delivery attempt of one outbox item; record it and move the item on."""
        number = item.attempts + 1
        try:
            if item.channel is Channel.MQTT:
                delivery = await self._publish(item, number)
            elif item.channel is Channel.EMAIL:
                delivery = await self._mail(item, number)
            else:
                delivery = await self._post(item, number)
        except Exception as exc:  # a bug here must not kill the sender loop
            log.exception("notification %s failed unexpectedly", item.key)
            delivery = _failed(item, number, f"{type(exc).__name__}: {exc}")
        moved = self._moved(item, delivery, number)
        self.attempts[(str(item.channel), _OUTCOMES.get(moved.status, str(moved.status)))] += 1
        try:
            await self._record(delivery, moved)
        except Exception:
            log.exception("could not record notification %s; it will be retried", item.key)

    async def _record(self, delivery: Delivery, item: OutboxItem) -> None:
        """Record the attempt and move the item on, with the attempts that end meanwhile."""
        recorded = asyncio.get_running_loop().create_future()
        self._unrecorded.append((delivery, item, recorded))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_pending())
        await recorded

    async def _record_pending(self) -> None:
        await asyncio.sleep(0)  # attempts answered in the same turn of the loop join the first
        while self._unrecorded:
            group, self._unrecorded = self._unrecorded, []
            await self._record_group(group)

    async def _record_group(self, group: Sequence[Unrecorded]) -> None:
        """One transaction for ``group``; a bug in it makes each be recorded alone."""
        s = self.settings

        async def settle() -> None:
            await asyncio.to_thread(self._settle, [(d, i) for d, i, _ in group])

        try:
            # Held through an outage: the attempts stay in flight, so they are not sent again.
            await hold_until_done(settle, self.outage, s.retry_backoff_s, s.retry_backoff_max_s)
        except Exception as exc:
            if len(group) > 1:
                for one in group:
                    await self._record_group([one])
                return
            _settle_future(group[0][2], exc)
            return
        for _, _, recorded in group:
            _settle_future(recorded, None)

    def _moved(self, item: OutboxItem, delivery: Delivery, number: int) -> OutboxItem:
        """``item`` after attempt ``number``: done, pending for a retry, or failed for good."""
        policy = self.policy
        retry = email.worth_retrying if item.channel is Channel.EMAIL else worth_retrying
        if delivery.ok:
            status, next_at = OutboxStatus.DONE, item.next_at
        elif retry(delivery) and number < policy.attempts:
            delay = timedelta(seconds=policy.delay(number))
            status, next_at = OutboxStatus.PENDING, wall_clock() + delay
        else:
            status, next_at = OutboxStatus.FAILED, item.next_at
            log.warning(
                "gave up on notification %s after %d attempts: %s", item.key, number, delivery.error
            )
        update = {"attempts": number, "status": status, "next_at": next_at}
        return item.model_copy(update=update | {"last_error": delivery.error})

    def _settle(self, attempts: Sequence[tuple[Delivery, OutboxItem]]) -> None:
        with self.store.atomic():
            for delivery, item in attempts:
                self.store.record_delivery(delivery)
                self.store.update_notification(item)

    async def _post(self, item: OutboxItem, number: int) -> Delivery:
        endpoints = self.settings.notify.endpoints(item.role, item.subject)
        endpoint = next((e for e in endpoints if e.url == item.target), None)
        if endpoint is None:
            # The endpoint was removed from the configuration since: say so, do not guess.
            return _failed(item, number, "PermanentError: endpoint no longer configured")
        assert self.sender is not None  # set by running(), or given
        # Signatures carry real time whatever clock the desk runs on: receivers check it.
        return await attempt(
            Webhook(endpoint.url, endpoint.secret.encode()),
            item.event_id,
            item.event,
            item.payload,
            number,
            send=self.sender,
            clock=wall_clock,
        )

    async def _mail(self, item: OutboxItem, number: int) -> Delivery:
        smtp = self.settings.notify.smtp
        if smtp is None:
            return _failed(item, number, "PermanentError: no SMTP server configured")
        # smtplib blocks: one thread per message, like the store calls.
        return await asyncio.to_thread(email.send_mail, item, number, smtp, wall_clock())

    async def _publish(self, item: OutboxItem, number: int) -> Delivery:
        s = self.settings
        body = mqtt_body(Notification(item.role, item.subject, item.event, item.payload))
        at, error = wall_clock(), ""
        client = self._client
        try:
            if client is None:
                raise aiomqtt.MqttError("not connected")
            await client.publish(item.target, body, qos=1)  # returns once the broker PUBACKs
        except aiomqtt.MqttError as exc:
            error = f"MqttError: {exc}"
        return Delivery(
            event_id=item.event_id,
            url=f"mqtt://{s.host}:{s.port}/{item.target}",
            attempt=number,
            at=at,
            ok=not error,
            error=error,
        )


def _settle_future(recorded: asyncio.Future[None], error: Exception | None) -> None:
    """Tell the attempt waiting on ``recorded`` (unless it was cancelled meanwhile)."""
    if recorded.done():
        return
    if error is None:
        recorded.set_result(None)
    else:
        recorded.set_exception(error)


def _failed(item: OutboxItem, number: int, error: str) -> Delivery:
    """A delivery attempt that never reached the recipient."""
    return Delivery(
        event_id=item.event_id, url=item.target, attempt=number, at=wall_clock(), error=error
    )
