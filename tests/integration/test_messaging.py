"""The shared plumbing on the real broker: events emitted outside a message, the outbox relay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aio_pika
import pytest

from shared.contracts import PricesChanged
from shared.topology import EVENTS_EXCHANGE
from tests.support import fetchval

pytestmark = pytest.mark.integration


async def test_an_event_emitted_outside_any_message_is_published_once_with_confirm(service_factory, settings):
    connection = await aio_pika.connect(settings.rabbitmq_url)
    channel = await connection.channel()
    probe = await channel.declare_queue(f"test.probe.{uuid.uuid4().hex[:6]}", exclusive=True)
    symbol = "Z" + uuid.uuid4().hex[:5].upper()
    await probe.bind(await channel.get_exchange(EVENTS_EXCHANGE), routing_key="market.prices.changed")
    try:
        async with service_factory("order").running() as svc:
            async with svc.emitting("test") as tx:
                tx.emit(PricesChanged(prices={symbol: "1.00"}, as_of=datetime.now(UTC)))
            received = []
            async with asyncio.timeout(10):
                while not received:
                    msg = await probe.get(fail=False, no_ack=True)
                    if msg is None:
                        await asyncio.sleep(0.05)
                    elif symbol.encode() in msg.body:
                        received.append(msg)
            assert received[0].type == "market.prices.changed"
            assert received[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert received[0].headers["x-schema-version"] == 1
            # the relay deletes the row once the broker has confirmed it (just after delivery)
            from tests.support import eventually

            await eventually(lambda: _outbox_empty(settings.database_url))
    finally:
        await connection.close()


async def _outbox_empty(url: str) -> bool:
    return await fetchval(url, 'SELECT count(*) = 0 FROM "order".outbox')


async def test_a_handler_that_keeps_failing_is_dead_lettered_with_the_error_after_the_delivery_limit(
        topology_declared, bus):
    from pathlib import Path

    from shared import topology
    from shared.contracts import AccountOpened
    from shared.service import Service
    from tests.support import eventually

    attempts = []
    service = Service("order", Path(__file__).parents[2] / "services/order/migrations", topology_declared)

    @service.handler(topology.ORDER_LEDGER, AccountOpened)
    async def broken(tx, event):
        attempts.append(event.account_id)
        raise RuntimeError("boom")

    account = f"acc-{uuid.uuid4().hex[:8]}"
    message_id = str(uuid.uuid4())
    # Events other tests left on the queue would fail here too: start from an empty queue.
    await (await bus.channel.get_queue(topology.ORDER_LEDGER.name, ensure=False)).purge()
    async with service.running():
        await bus.publish_json("ledger.account.opened", {"account_id": account, "kind": "individual",
                                                         "plan": "basic", "opened_at": "2026-11-25T10:00:00Z"},
                               message_id=message_id)
        reason = await eventually(lambda: fetchval(topology_declared.database_url,
                                                   'SELECT reason FROM "order".dead_letters WHERE message_id = $1',
                                                   message_id), timeout=30)
    assert "failed 5 times" in reason and "boom" in reason
    # (other tests' accounts may still be queued on the same queue: count this one's)
    assert [a for a in attempts if a == account] == [account] * 5


async def test_a_retired_binding_left_on_a_running_broker_is_removed_at_start(settings, topology_declared):
    """A broker set up by an earlier release still routes ``ledger.fills.booked`` to
    ``ledger.withdrawals``; declaring the topology (what every service does at start) removes
    that binding, so the queue stops receiving what no handler reads."""
    from shared import topology

    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        events = await channel.get_exchange(EVENTS_EXCHANGE)
        queue = await channel.declare_queue("ledger.withdrawals", passive=True)

        async def routed() -> int:
            before = (await channel.declare_queue("ledger.withdrawals", passive=True)).declaration_result.message_count
            await events.publish(aio_pika.Message(b"{}", message_id=str(uuid.uuid4())),
                                 routing_key="ledger.fills.booked")
            after = (await channel.declare_queue("ledger.withdrawals", passive=True)).declaration_result.message_count
            return after - before

        await queue.bind(events, routing_key="ledger.fills.booked")  # as an earlier release left it
        assert await routed() == 1
        await queue.purge()
        await topology.declare(channel)
        assert await routed() == 0
    finally:
        await connection.close()


async def test_the_database_is_created_with_byte_order_collation(settings, topology_declared):
    """``ensure_database`` creates the services' database with the C collation: text keys
    (account ids, symbols, books) sort and index by bytes, the window's sorts rely on it."""
    collation = await fetchval(settings.database_url,
                               "SELECT datcollate FROM pg_database WHERE datname = current_database()")
    assert collation == "C"
    # and so account ids order as bytes, whatever the server's own locale
    assert await fetchval(settings.database_url, "SELECT 'a-2' < 'a1' AND 'Z' < 'a'") is True


async def test_background_work_goes_on_after_a_failure_and_stops_with_the_service(topology_declared):
    from pathlib import Path

    from shared.service import Service
    from tests.support import eventually

    runs: list[float] = []
    service = Service("order", Path(__file__).parents[2] / "services/order/migrations", topology_declared)

    async def job(svc: Service) -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        async with svc.pool.acquire() as conn:  # the pool is open while the job runs
            await conn.fetchval("SELECT 1")

    service.every("probe", 0.05, job)
    async with service.running():
        await eventually(lambda: asyncio.sleep(0, len(runs) >= 3))  # the failed first run did not end it
    stopped = len(runs)
    await asyncio.sleep(0.2)
    assert len(runs) == stopped  # the stop cancelled it: no run after the pool closed


async def test_a_query_reads_one_snapshot_while_another_transaction_commits(topology_declared, bus):
    """A read-only query (``idempotent=False``) sees one moment however many statements it
    runs: a row committed between its two reads is in neither (a status view read in two
    statements must not mix the state before a price tick with the call the tick issued)."""
    from pathlib import Path

    import asyncpg

    from shared import topology
    from shared.contracts import GetOrder
    from shared.service import Service

    table = f"public.snapshot_probe_{uuid.uuid4().hex[:8]}"
    url = topology_declared.database_url
    other = await asyncpg.connect(url)
    await other.execute(f"CREATE TABLE {table} (n int)")
    first_read, committed = asyncio.Event(), asyncio.Event()
    counts = []
    service = Service("order", Path(__file__).parents[2] / "services/order/migrations", topology_declared)

    @service.handler(topology.ORDER_COMMANDS, GetOrder, idempotent=False)
    async def query(tx, _query):
        counts.append(await tx.conn.fetchval(f"SELECT count(*) FROM {table}"))
        first_read.set()
        await committed.wait()
        counts.append(await tx.conn.fetchval(f"SELECT count(*) FROM {table}"))

    try:
        await (await bus.channel.get_queue(topology.ORDER_COMMANDS.name, ensure=False)).purge()
        async with service.running():
            reply = asyncio.create_task(bus.request(GetOrder(order_id=uuid.uuid4())))
            async with asyncio.timeout(15):
                await first_read.wait()
            await other.execute(f"INSERT INTO {table} VALUES (1)")  # committed at once
            committed.set()
            assert (await reply).ok
        assert counts == [0, 0]
        assert await other.fetchval(f"SELECT count(*) FROM {table}") == 1
    finally:
        await other.execute(f"DROP TABLE {table}")
        await other.close()
