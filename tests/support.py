"""Helpers for tests that talk to the real RabbitMQ and PostgreSQL.

Every test run gets its own RabbitMQ vhost and its own PostgreSQL database, so two runs (or a
developer's ``m1 up`` beside the suite) never see each other's messages or rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aio_pika
import asyncpg

from shared.contracts import AccountFills, FillsBooked, HoldWindowCash, Message, Reply, WindowCashHeld
from shared.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

RABBIT_HOST = os.environ.get("M1_TEST_RABBIT_HOST", "127.0.0.1:5672")
PG_BASE = os.environ.get("M1_TEST_PG_BASE", "postgresql://postgres@127.0.0.1:5432")


def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost(name: str) -> str:
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{RABBIT_HOST}/{quote(name, safe='')}"


def delete_vhost(name: str) -> None:
    try:
        rabbitmqctl("delete_vhost", name)
    except subprocess.CalledProcessError:
        pass


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


class Bus:
    """A plain aio-pika client, as an outside system (the bank, an operator) would use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def __aenter__(self) -> Bus:
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.events = await self.channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        self.commands = await self.channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.connection.close()

    async def publish_raw(self, routing_key: str, body: bytes, *, message_id: str | None = None,
                          exchange: str = EVENTS_EXCHANGE, correlation_id: str | None = None) -> None:
        ex = self.events if exchange == EVENTS_EXCHANGE else self.commands
        await ex.publish(
            aio_pika.Message(body, message_id=message_id, correlation_id=correlation_id or message_id,
                             content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
        )

    async def publish_json(self, routing_key: str, payload: dict, *, message_id: str | None = None) -> None:
        await self.publish_raw(routing_key, json.dumps(payload).encode(), message_id=message_id)

    async def request(self, command: Message, *, message_id: str | None = None, timeout: float = 15.0,
                      routing_key: str | None = None) -> Reply:
        """Send a command to the commands exchange (routing key ``command.TYPE`` unless given)
        and wait for the service's reply."""
        channel = await self.connection.channel()
        try:
            reply_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            commands = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
            correlation = str(uuid.uuid4())
            await commands.publish(
                aio_pika.Message(command.model_dump_json().encode(), message_id=message_id or str(uuid.uuid4()),
                                 correlation_id=correlation, reply_to=reply_queue.name,
                                 content_type="application/json", type=command.TYPE),
                routing_key=routing_key or command.TYPE,
            )
            async with asyncio.timeout(timeout):
                async with reply_queue.iterator() as messages:
                    async for msg in messages:
                        await msg.ack()
                        return Reply.model_validate_json(msg.body)
        finally:
            await channel.close()
        raise AssertionError("no reply")


class LedgerHolds:
    """Stands in for the ledger's cash hold where a test runs the window without the ledger:
    answers every ``ledger.window.hold`` with ``ledger.window.held``, every account having
    the cash asked unless ``short`` says otherwise (account -> the cash it has), and keeps
    what each window asked (``asked``: window id -> account -> amount)."""

    def __init__(self, bus: Bus) -> None:
        self.bus, self.short, self.asked = bus, {}, {}

    async def __aenter__(self) -> LedgerHolds:
        self.queue = await self.bus.channel.declare_queue(exclusive=True, auto_delete=True)
        await self.queue.bind(self.bus.commands, routing_key=HoldWindowCash.TYPE)
        self.tag = await self.queue.consume(self._answer, no_ack=True)
        return self

    async def __aexit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            await self.queue.cancel(self.tag)

    async def _answer(self, msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        hold = HoldWindowCash.model_validate_json(msg.body)
        self.asked[str(hold.window_id)] = {a: m for a, m in hold.holds}
        short = {a: self.short[a] for a, _ in hold.holds if a in self.short}
        await self.bus.publish_json(WindowCashHeld.TYPE,
                                    WindowCashHeld(window_id=hold.window_id, short=short).model_dump(mode="json"),
                                    message_id=str(uuid.uuid4()))


async def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def fetchval(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def dlq_messages(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Read (and ack) everything currently in a DLQ."""
    connection = await aio_pika.connect(url)
    out = []
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=False)
        while (msg := await q.get(fail=False, no_ack=True)) is not None:
            out.append(msg)
    finally:
        await connection.close()
    return out


def fills_batch(*parts: AccountFills, batch: int = 0) -> FillsBooked:
    """One booked fills batch (``ledger.fills.booked``) carrying ``parts``, each account's
    fills, cash, positions and version, in account order as the ledger sends them; the window
    and the booking time are the first part's."""
    accounts = sorted(parts, key=lambda p: p.account_id)
    return FillsBooked(window_id=accounts[0].window_id, batch=batch, booked_at=accounts[0].booked_at,
                       accounts=accounts)
