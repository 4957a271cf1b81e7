"""The delivery worker: sends the pending webhook and email deliveries after their feed
entry committed, and records every outcome.

The ``deliveries`` rows are written in the same transaction as the feed entry (an outbox),
so a notification is never lost however a channel behaves. The worker:

1. claims due pending rows with ``FOR UPDATE SKIP LOCKED`` in a short transaction, counting
   the attempt and leasing the rows (their due time moves past the send timeout), so that
   several workers never send the same row at once and a worker that dies mid-send leaves
   the rows to be claimed again when the lease lapses;
2. sends them concurrently, each on its own channel, outside any transaction: a slow or
   failing channel delays nothing else;
3. records the outcomes in one statement: ``delivered`` only after the receiver accepted,
   otherwise ``pending`` again with an exponential backoff, or ``failed`` with the error once
   the attempts are used.

It wakes on PostgreSQL ``NOTIFY`` (sent by the transaction that adds deliveries, so only on
its commit), when the earliest pending retry comes due, and every
``notification_delivery_poll_seconds`` in any case. Delivery times (due, delivered) are the
database's clock, real time even when the service clock is pinned: retries are about time
really passing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import asyncpg
from prometheus_client import Counter

from services.notification import domain, store
from services.notification.channels import Channel, Delivery, DeliveryError, Undeliverable
from shared.settings import Settings

SENT = Counter("m1_notification_deliveries_total", "Delivery attempts by channel and outcome",
               ["channel", "outcome"])


class DeliveryWorker:
    def __init__(self, pool: asyncpg.Pool, channels: dict[str, Channel], settings: Settings, log: logging.Logger,
                 *, batch: int = 50) -> None:
        self.pool, self.channels, self.log, self.batch = pool, channels, log, batch
        self.database_url = settings.database_url
        self.poll_seconds = settings.notification_delivery_poll_seconds
        self.max_attempts = settings.notification_delivery_max_attempts
        self.base = settings.notification_retry_base_seconds
        self.cap = settings.notification_retry_max_seconds
        self.send_timeout = settings.notification_send_timeout
        # A claim outlives any send it covers; then the rows are due again.
        self.lease_seconds = max(60.0, 3 * self.send_timeout)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None
        self._stopping = False

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="notification-deliveries")

    async def stop(self) -> None:
        """Stop claiming and let the sends in flight finish and be recorded (at most the send
        timeout); a send still running then is cancelled and its rows come back after the lease."""
        self._stopping = True
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self.send_timeout + 6)
            except TimeoutError:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        for channel in self.channels.values():
            await channel.close()

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self.database_url,
                                                   server_settings={"application_name": "m1-notification-wake"})
            await self._listener.add_listener(store.DELIVERIES_CHANNEL, self.wake)
        except (OSError, asyncpg.PostgresError) as exc:  # polling still delivers
            self._listener = None
            self.log.warning("delivery wake-ups unavailable, polling", extra={"error": repr(exc)})

    async def _run(self) -> None:
        failures, wait = 0, self.poll_seconds
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass
            self._wake.clear()
            wait = self.poll_seconds
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                while not self._stopping and await self.drain_once() == self.batch:
                    pass
                async with self.pool.acquire() as conn:
                    next_due = await store.next_due(conn)
                if next_due is not None:  # a retry comes due before the next poll: wake for it
                    wait = min(wait, max(0.01, next_due))
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: the rows wait, try again
                failures += 1
                delay = min(0.2 * 2 ** failures, 10.0)
                self.log.warning("delivery worker failed, retrying", extra={"error": repr(exc), "retry_in_s": delay})
                if not self._stopping:
                    await asyncio.sleep(delay)

    async def drain_once(self) -> int:
        """Claim, send and record one batch; returns how many deliveries it handled."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.claim(conn, self.lease_seconds, self.batch)
        if not rows:
            return 0
        errors = await asyncio.gather(*(self._send(row) for row in rows))
        retry_in: list[float | None] = [
            None if error is None or error.startswith(_UNDELIVERABLE)
            else domain.after_failure(row["attempts"], self.max_attempts, self.base, self.cap)
            for row, error in zip(rows, errors, strict=True)]
        async with self.pool.acquire() as conn:
            await store.record(conn, [r["id"] for r in rows], [r["attempts"] for r in rows], list(errors), retry_in)
        for row, error, delay in zip(rows, errors, retry_in, strict=True):
            outcome = "delivered" if error is None else "retry" if delay is not None else "failed"
            SENT.labels(row["channel"], outcome).inc()
            fields = {"delivery_id": str(row["id"]), "channel": row["channel"], "account_id": row["account_id"],
                      "feed_id": row["feed_id"], "attempt": row["attempts"], "outcome": outcome}
            if error is None:
                self.log.info("delivered", extra=fields)
            else:
                self.log.warning("delivery failed", extra={**fields, "error": error, "retry_in_s": delay})
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> str | None:
        """Send one claimed delivery; None when accepted, else the error as text."""
        delivery = Delivery(id=str(row["id"]), feed_id=row["feed_id"], account_id=row["account_id"],
                            kind=row["kind"], message=row["message"], data=json.loads(row["data"]),
                            cause_id=row["cause_id"], created_at=row["created_at"], attempt=row["attempts"],
                            webhook_url=row["webhook_url"], webhook_secret=row["webhook_secret"], email=row["email"])
        try:
            async with asyncio.timeout(self.send_timeout + 5):
                await self.channels[row["channel"]].send(delivery)
        except Undeliverable as exc:
            return f"{_UNDELIVERABLE}{exc}"
        except DeliveryError as exc:
            return str(exc)[:1000] or type(exc).__name__
        except TimeoutError:
            return f"no answer within {self.send_timeout + 5:g}s"
        except Exception as exc:  # a channel bug must not stop the others
            self.log.exception("delivery channel crashed", extra={"channel": row["channel"]})
            return repr(exc)[:1000]
        return None


# Prefix of an error that no retry can cure: the delivery is failed at once.
_UNDELIVERABLE = "undeliverable: "
