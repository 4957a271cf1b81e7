"""Effectively-once message handling: inbox, outbox and dead-lettering around a handler.

A service handler is a plain coroutine ``(tx: Tx, message: Model) -> Message | None`` that
reads and writes through ``tx.conn`` and emits events with ``tx.emit``. ``consume`` wraps it:

1. parse the body into the contract for its routing key; a body that does not parse is
   refused at once with the validation errors as the reason (never redelivered);
2. open one transaction; insert the message id into the inbox (a duplicate is acked and
   skipped, and a repeated request gets its original reply); run the handler; write the
   emitted events into the outbox; commit; then ack;
3. ``Rejected`` from the handler (a domain refusal) rolls the effect back and records the
   refusal instead: inbox row, ``dead_letters`` row, and a copy of the original message with
   the reason in headers, published to the service's DLQ through the outbox;
4. a transient failure (database unreachable, serialization conflict) is retried with
   backoff in place, so a database restart never pushes messages into the DLQ;
5. any other error is logged and the message is redelivered; on the last allowed delivery it
   is dead-lettered with the error as the reason, so no consumer dies and nothing is lost.

One JSON log line is written per handled message (service, type, message_id,
correlation_id, account_id, outcome, duration_ms).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from faststream import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from shared.contracts import Message, Reply, decimal_errors
from shared.db import TRANSIENT_DB_ERRORS
from shared.topology import COMMANDS_EXCHANGE, DEAD_LETTER_EXCHANGE, DELIVERY_LIMIT, EVENTS_EXCHANGE, QueueSpec

_ID_NAMESPACE = uuid.UUID("8d0c6c4e-5b7e-4f0e-9a55-2f1f5a1d9c01")
# The routing key a message was first delivered with: on its DLQ copy, and on a dead letter
# replayed to its queue through the default exchange (shared/dead_letters.py).
ORIGINAL_KEY_HEADER = "x-original-routing-key"

MESSAGES = Counter("m1_messages_total", "Messages handled", ["service", "queue", "type", "outcome"])
DURATION = Histogram("m1_message_seconds", "Time to handle one message", ["service", "queue"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
PUBLISHED = Counter("m1_outbox_published_total", "Outbox rows published with a confirm", ["service"])


class Rejected(Exception):
    """A permanent refusal: bad input or a domain rule. The message goes to the DLQ."""

    def __init__(self, reason: str, errors: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []


def validation_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors as short sentences: ``amount: at most 2 decimal places allowed``."""
    out = []
    for err in decimal_errors(exc):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return out


@dataclass
class Outgoing:
    exchange: str
    routing_key: str
    message_id: str
    message_type: str
    headers: dict[str, Any]
    body: bytes
    correlation_id: str | None = None  # None: the handled message's


@dataclass
class Tx:
    """What a handler gets: the open transaction, the message's metadata and an outbox."""

    conn: asyncpg.Connection
    service: str
    message_id: str
    correlation_id: str
    routing_key: str
    now: datetime
    outgoing: list[Outgoing] = field(default_factory=list)
    # The message as it arrived (already validated against its contract), for handlers that
    # hand a large body to PostgreSQL as JSON instead of re-encoding its parsed rows. Empty in
    # a scheduled job's transaction, which handles no message.
    body: bytes = b""

    def _next_id(self) -> str:
        # Deterministic ids: a redone handler would emit the same ids, so consumers dedupe.
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self.service}:{self.message_id}:{len(self.outgoing)}"))

    def emit(self, message: Message, *, command: bool = False) -> str:
        """Queue an event (or a command to another service) for publication after commit."""
        return self.emit_json(type(message), message.model_dump_json().encode(), command=command)

    def emit_json(self, model: type[Message], body: bytes, *, command: bool = False) -> str:
        """Queue a message of ``model`` whose JSON body is given (built elsewhere, for example
        in SQL for bodies of millions of values); the consumer validates it as usual."""
        out = Outgoing(
            exchange=COMMANDS_EXCHANGE if command else EVENTS_EXCHANGE,
            routing_key=model.TYPE,
            message_id=self._next_id(),
            message_type=model.TYPE,
            headers={"x-schema-version": model.VERSION},
            body=body,
        )
        self.outgoing.append(out)
        return out.message_id

    def send_to_queue(self, queue: str, routing_key: str, message_id: str, body: bytes, *, correlation_id: str,
                      headers: dict[str, Any]) -> None:
        """Queue a message for one queue alone (through the default exchange, whose routing
        key is the queue's name), to be handled as one of ``routing_key``: a dead letter's
        replay (shared/dead_letters.py); ``headers`` must name the key (``ORIGINAL_KEY_HEADER``)."""
        self.outgoing.append(Outgoing(exchange="", routing_key=queue, message_id=message_id, message_type=routing_key,
                                      headers=headers, body=body, correlation_id=correlation_id))


async def write_outbox(conn: asyncpg.Connection, correlation_id: str, rows: list[Outgoing]) -> None:
    if rows:  # one statement however many rows
        await conn.execute(
            """INSERT INTO outbox (exchange, routing_key, message_id, correlation_id, message_type, headers, body)
               SELECT e, r, m, c, t, h::jsonb, b
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
                    WITH ORDINALITY AS u(e, r, m, c, t, h, b, n)
               ORDER BY n""",
            [o.exchange for o in rows], [o.routing_key for o in rows], [o.message_id for o in rows],
            [o.correlation_id or correlation_id for o in rows], [o.message_type for o in rows],
            [json.dumps(o.headers) for o in rows], [o.body for o in rows],
        )


class OutboxRelay:
    """Publishes outbox rows in id order with publisher confirms, deleting a row only after
    its confirm. A crash re-sends at most the batch in flight; consumers dedupe by id."""

    def __init__(self, pool: asyncpg.Pool, broker: RabbitBroker, log: logging.Logger, service: str, *,
                 poll_seconds: float = 1.0, batch: int = 500) -> None:
        self.pool, self.broker, self.log, self.service_name = pool, broker, log, service
        self.poll_seconds, self.batch = poll_seconds, batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.drain_once():
                    pass
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: keep the rows, try again
                failures += 1
                delay = min(0.2 * 2 ** failures, 10.0)
                self.log.warning("outbox relay failed, retrying", extra={"error": repr(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)

    async def drain_once(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, exchange, routing_key, message_id, correlation_id, message_type, headers, body
                   FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self.batch,
            )
            if not rows:
                return 0
            await asyncio.gather(*(self._publish(r) for r in rows))
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        PUBLISHED.labels(self.service_name).inc(len(rows))
        return len(rows)

    async def _publish(self, row: asyncpg.Record) -> None:
        await self.broker.publish(
            row["body"],
            exchange=row["exchange"],
            routing_key=row["routing_key"],
            message_id=row["message_id"],
            correlation_id=row["correlation_id"],
            message_type=row["message_type"],
            headers=json.loads(row["headers"]),
            content_type="application/json",
            persist=True,
            mandatory=False,
        )


Handler = Callable[[Tx, Any], Awaitable[Message | None]]
RejectHook = Callable[[Tx, dict | None, str], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    model: type[Message]
    handler: Handler
    idempotent: bool
    on_reject: RejectHook | None


class Consumer:
    """Builds FastStream subscribers around handlers (see the module docstring)."""

    def __init__(self, service: str, broker: RabbitBroker, log: logging.Logger, clock) -> None:
        self.service, self.broker, self.log, self.clock = service, broker, log, clock
        self.pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self.routes: dict[QueueSpec, dict[str, Route]] = {}
        self._built: set[QueueSpec] = set()

    def handler(self, queue: QueueSpec, model: type[Message], *, idempotent: bool = True,
                on_reject: RejectHook | None = None, key: str | None = None) -> Callable[[Handler], Handler]:
        """Register a handler for messages of ``model`` (routing key ``key``, by default
        ``model.TYPE``) on ``queue``.

        ``idempotent=False`` is for read-only queries, which need no inbox row and run on one
        snapshot (REPEATABLE READ READ ONLY: a query that writes fails). ``on_reject``
        may emit events about a refusal (for example, telling a known account's holder that a
        deposit was refused); it also runs for bodies that do not parse.
        """

        def decorator(fn: Handler) -> Handler:
            self.routes.setdefault(queue, {})[key or model.TYPE] = Route(model, fn, idempotent, on_reject)
            return fn

        return decorator

    def build(self) -> None:
        """Create one FastStream subscriber per queue that has handlers."""
        for queue, routes in self.routes.items():
            if queue in self._built:
                continue
            self._built.add(queue)
            self._subscribe(queue, routes)

    def _subscribe(self, queue: QueueSpec, routes: dict[str, Route]) -> None:
        async def whole_message(msg, original=None):  # we parse the body ourselves, per routing key
            return msg

        # The broker runs with apply_types=False: the handler gets the message as it is, with no
        # dependency injection per message (it cost a thread hand-off each time).
        @self.broker.subscriber(queue.rabbit_queue(), decoder=whole_message, ack_policy=AckPolicy.MANUAL,
                                title=queue.name)
        async def subscriber(message: RabbitMessage) -> Any:
            return await self._handle(queue, routes, message.body, message)

    async def _handle(self, queue: QueueSpec, routes: dict[str, Route], body: bytes, message) -> Any:
        started = time.perf_counter()
        raw = message.raw_message
        routing_key = raw.routing_key or ""
        if not raw.exchange and (raw.headers or {}).get(ORIGINAL_KEY_HEADER):
            # A dead letter replayed to this queue alone, through the default exchange, whose
            # routing key is the queue's name (shared/dead_letters.py): route it by its own key.
            routing_key = str(raw.headers[ORIGINAL_KEY_HEADER])
        body_hash = hashlib.sha256(body).hexdigest()
        message_id = raw.message_id or "sha256:" + body_hash
        correlation_id = raw.correlation_id or message_id
        wants_reply = bool(raw.reply_to)
        route = routes.get(routing_key)
        on_reject = (route or next(iter(routes.values()))).on_reject
        log_fields = {"type": routing_key, "message_id": message_id, "correlation_id": correlation_id,
                      "queue": queue.name, "account_id": None}
        reply: Any = None
        try:
            parsed, reason, errors = None, None, []
            if raw.message_id is None:
                reason = "message has no message_id"
            elif route is None:
                reason = f"no contract for routing key {routing_key!r} on queue {queue.name}"
            else:
                try:
                    parsed = route.model.model_validate_json(body)
                    log_fields["account_id"] = getattr(parsed, "account_id", None)
                except ValidationError as exc:
                    errors = validation_errors(exc)
                    reason = "invalid message: " + "; ".join(errors)
            inbox_key = message_id
            if parsed is not None:
                outcome, reply = await self._run_handler(route.handler, parsed, route.idempotent, message_id,
                                                         correlation_id, routing_key, body, body_hash,
                                                         wants_reply)
                if outcome == "conflict":
                    # Same id, different content: refuse and report, never accept silently.
                    inbox_key = f"{message_id}:conflict:{body_hash}"
                    reason = "message id already used for a different message; refused as a conflict"
                elif outcome == "rejected":
                    reason, errors = reply.reason, reply.errors
            if reason is not None:
                outcome = "rejected"
                reply = await self._reject(queue, on_reject, body, message_id, correlation_id, routing_key, reason,
                                           errors, log_fields, inbox_key, answered=wants_reply)
            await message.ack()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            count = int((raw.headers or {}).get("x-delivery-count") or 0)
            if count + 1 >= DELIVERY_LIMIT:
                outcome = "dead-lettered"
                reply = await self._reject(queue, on_reject, body, message_id, correlation_id, routing_key,
                                           f"handler failed {count + 1} times: {exc!r}", [], log_fields,
                                           answered=wants_reply)
                await message.ack()
            else:
                outcome = "error"
                log_fields["error"] = repr(exc)
                await message.nack(requeue=True)
            self.log.exception("handler failed", extra={**log_fields, "outcome": outcome})
        elapsed = time.perf_counter() - started
        duration_ms = round(elapsed * 1000, 2)
        MESSAGES.labels(self.service, queue.name, routing_key, outcome).inc()
        DURATION.labels(self.service, queue.name).observe(elapsed)
        level = logging.WARNING if outcome in ("rejected", "dead-lettered", "error") else logging.INFO
        extra = {**log_fields, "outcome": outcome, "duration_ms": duration_ms}
        if outcome in ("rejected", "dead-lettered") and reply is not None:
            extra["reason"] = reply.reason
        self.log.log(level, "handled", extra=extra)
        if wants_reply and reply is not None:
            return reply.model_dump(mode="json")
        return None

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[Any]], *,
                           snapshot: bool = False) -> Any:
        """Run ``work`` in one transaction, retrying transient database failures with backoff.
        A COMMIT that failed may in fact have committed: the inbox row makes the redo safe.
        ``snapshot``: a read-only query, run REPEATABLE READ READ ONLY so that all its
        statements see one moment (under READ COMMITTED a view read in two statements could
        mix the state before and after another transaction's commit)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
            wait=wait_exponential(multiplier=0.1, max=10),
            before_sleep=lambda s: self.log.warning("database unavailable, retrying",
                                                    extra={"error": repr(s.outcome.exception())}),
        ):
            with attempt:
                isolation = {"isolation": "repeatable_read", "readonly": True} if snapshot else {}
                async with self.pool.acquire() as conn, conn.transaction(**isolation):
                    return await work(conn)
        raise AssertionError("unreachable")

    async def _run_handler(self, handler, parsed, idempotent, message_id, correlation_id, routing_key, body,
                           body_hash, wants_reply):
        async def work(conn: asyncpg.Connection):
            if idempotent:
                row = await conn.fetchrow(
                    """INSERT INTO inbox (message_id, routing_key, outcome, body_sha256) VALUES ($1, $2, 'ok', $3)
                       ON CONFLICT (message_id) DO NOTHING RETURNING message_id""",
                    message_id, routing_key, body_hash,
                )
                if row is None:
                    previous = await conn.fetchrow("SELECT reply, body_sha256 FROM inbox WHERE message_id = $1",
                                                   message_id)
                    if previous["body_sha256"] != body_hash:
                        return "conflict", None
                    stored = Reply.model_validate_json(previous["reply"]) if previous["reply"] else Reply(ok=True)
                    return "duplicate", stored
            tx = Tx(conn, self.service, message_id, correlation_id, routing_key, self.clock.now(), body=body)
            result = await handler(tx, parsed)  # Rejected propagates: the whole transaction rolls back
            reply = Reply(ok=True, result=result.model_dump(mode="json") if result is not None else None)
            if idempotent and wants_reply:  # kept so that a repeated request gets the same answer
                await conn.execute("UPDATE inbox SET reply = $2::jsonb WHERE message_id = $1", message_id,
                                   reply.model_dump_json())
            await write_outbox(conn, correlation_id, tx.outgoing)
            return "ok", reply

        try:
            outcome, reply = await self._transaction(work, snapshot=not idempotent)
        except Rejected as exc:
            return "rejected", Reply(ok=False, reason=exc.reason, errors=exc.errors)
        if outcome == "ok" and self.relay:
            self.relay.wake()
        return outcome, reply

    async def _reject(self, queue: QueueSpec, on_reject, body, message_id, correlation_id, routing_key, reason,
                      errors, log_fields, inbox_key: str | None = None, *, answered: bool = False) -> Reply:
        """Record a refusal (inbox, ``dead_letters``, the DLQ copy); ``answered``: the sender
        waits for a reply, and gets the refusal."""
        reply = Reply(ok=False, reason=reason, errors=errors)
        try:
            raw_json = json.loads(body)
            raw_json = raw_json if isinstance(raw_json, dict) else None
        except ValueError:
            raw_json = None
        account_id = log_fields.get("account_id") or (raw_json or {}).get("account_id")
        account_id = account_id if isinstance(account_id, str) and len(account_id) <= 64 else None

        async def work(conn: asyncpg.Connection):
            row = await conn.fetchrow(
                """INSERT INTO inbox (message_id, routing_key, outcome, reply, body_sha256)
                   VALUES ($1, $2, 'rejected', $3::jsonb, $4)
                   ON CONFLICT (message_id) DO NOTHING RETURNING message_id""",
                inbox_key or message_id, routing_key, reply.model_dump_json(), hashlib.sha256(body).hexdigest(),
            )
            if row is None:
                return  # this refusal was already recorded: a replay changes nothing
            await conn.execute(
                """INSERT INTO dead_letters (message_id, routing_key, correlation_id, account_id, reason, body, queue,
                                            answered)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                message_id, routing_key, correlation_id, account_id, reason, body, queue.name, answered,
            )
            # Seeded apart from the message id: a refused conflict must not emit ids that the
            # original, accepted message's events already used.
            tx = Tx(conn, self.service, f"{inbox_key or message_id}:refused", correlation_id, routing_key,
                    self.clock.now())
            if on_reject is not None:
                await on_reject(tx, raw_json, reason)
            copy = Outgoing(DEAD_LETTER_EXCHANGE, queue.service, message_id, routing_key or "unknown",
                            {"x-reason": reason[:4000], ORIGINAL_KEY_HEADER: routing_key,
                             "x-original-queue": queue.name, "x-rejected-by": self.service}, body)
            await write_outbox(conn, correlation_id, [*tx.outgoing, copy])

        await self._transaction(work)
        if self.relay:
            self.relay.wake()
        return reply
