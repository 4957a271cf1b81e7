"""A cancel that commits while a close is running wins: the intent never trades. Shares a
window not allocated yet is selling are not sold again by the next window. The $25,000 rule
counts equity less the margin loan."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from services.window import store
from shared.contracts import Intent
from shared.db import migrate

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "window" / "migrations"


@pytest.fixture
async def window_db(topology_declared):
    schema = f"window_race_{uuid.uuid4().hex[:8]}"
    await migrate(topology_declared.database_url, schema, MIGRATIONS)
    conns = [await asyncpg.connect(topology_declared.database_url, server_settings={"search_path": schema})
             for _ in range(2)]
    yield conns
    for conn in conns:
        await conn.close()
    admin = await asyncpg.connect(topology_declared.database_url)
    await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await admin.close()


async def test_a_cancel_committed_during_a_close_is_not_overwritten_by_the_close(window_db):
    closer_conn, cancel_conn = window_db
    await store.set_cash(closer_conn, "A", Decimal("100.00"), 1)
    buy = Intent(intent_id=uuid.uuid4(), account_id="A", symbol="VTI", side="buy", amount=Decimal("100.00"),
                 source="rebalance")
    await store.insert_intents(closer_conn, uuid.uuid4(), [buy], datetime.now(UTC) - timedelta(minutes=1))
    window_id = uuid.uuid4()

    cancelling = cancel_conn.transaction()
    await cancelling.start()
    await store.cancel(cancel_conn, [buy.intent_id], None)  # row locked, not yet committed

    async def close():
        async with closer_conn.transaction():
            frozen = await store.freeze_and_fund(closer_conn, window_id, datetime.now(UTC), None,
                                                 Decimal("25000"), "under the minimum")
            await store.insert_window(closer_conn, window_id, datetime.now(UTC))
            return frozen

    closing = asyncio.create_task(close())
    await asyncio.sleep(0.5)  # the close now waits on the cancel's row lock
    await cancelling.commit()
    assert await closing == 0
    row = await closer_conn.fetchrow("SELECT status, window_id FROM intents WHERE intent_id = $1", buy.intent_id)
    assert row["status"] == "cancelled" and row["window_id"] is None


async def test_shares_a_window_still_trading_sells_are_not_funded_again_by_the_next_window(window_db):
    conn, _ = window_db
    now = datetime.now(UTC)
    await store.set_prices(conn, {"VTI": Decimal("10.00")})
    await store.set_position(conn, "A", "VTI", Decimal("5"), 1)

    async def window(*intents: Intent) -> uuid.UUID:
        window_id = uuid.uuid4()
        await store.insert_intents(conn, uuid.uuid4(), list(intents), now - timedelta(minutes=1))
        async with conn.transaction():
            assert await store.freeze_and_fund(conn, window_id, now, None, Decimal("25000"), "under the minimum")
            await store.insert_window(conn, window_id, now)
        return window_id

    def sell(**size) -> Intent:
        return Intent(intent_id=uuid.uuid4(), account_id="A", symbol="VTI", side="sell", source="order", **size)

    async def funded(intent: Intent) -> tuple:
        row = await conn.fetchrow("SELECT status, held, funded_quantity, funded_amount FROM window_intents "
                                  "WHERE intent_id = $1", intent.intent_id)
        return row["status"], row["held"], row["funded_quantity"], row["funded_amount"]

    # The first window sells 4 shares and $5.00, which at the lowest price it may fill at
    # ($10.00 less 5%) is 0.52632 shares; it is executing, the ledger has booked nothing.
    first = await window(sell(quantity=Decimal("4")), sell(amount=Decimal("5.00")))
    second_sell = sell(quantity=Decimal("1"))
    await window(second_sell)
    assert await funded(second_sell) == ("frozen", Decimal("0.47368"), Decimal("0.47368"), None)
    # nothing left of the 5 shares: the third window's sell is refused as not held
    third_sell = sell(amount=Decimal("1.00"))
    await window(third_sell)
    assert (await funded(third_sell))[0] == "rejected"
    # an operator stops the first window (its intents wait for the next one): its shares are free again
    await store.set_status(conn, first, "abandoned")
    fourth_sell = sell(quantity=Decimal("5"))
    await window(fourth_sell)
    assert await funded(fourth_sell) == ("frozen", Decimal("4.52632"), Decimal("4.52632"), None)


async def test_the_afternoon_window_takes_accounts_of_25000_equity_net_of_their_loan(window_db):
    conn, _ = window_db
    now = datetime.now(UTC)
    await store.set_prices(conn, {"VTI": Decimal("100.00")})
    for account in ("owns", "borrowed"):  # both $26,000 of cash and shares, morning accounts
        await store.set_cash(conn, account, Decimal("16000.00"), 1)
        await store.set_position(conn, account, "VTI", Decimal("100"), 1)
    await store.set_loan(conn, "borrowed", Decimal("1000.01"), 2)  # equity $24,999.99
    await store.set_loan(conn, "borrowed", Decimal("0.00"), 1)  # an older report changes nothing
    buys = {a: Intent(intent_id=uuid.uuid4(), account_id=a, symbol="VTI", side="buy", amount=Decimal("10.00"),
                      source="rebalance") for a in ("owns", "borrowed")}
    for intent in buys.values():
        await store.insert_intents(conn, uuid.uuid4(), [intent], now - timedelta(minutes=1))
    async with conn.transaction():
        assert await store.freeze_and_fund(conn, uuid.uuid4(), now, "afternoon", Decimal("25000"),
                                           "under the minimum") == 1
    rows = await conn.fetch("SELECT account_id, status FROM intents WHERE intent_id = ANY($1::uuid[])",
                            [i.intent_id for i in buys.values()])
    assert {r["account_id"]: r["status"] for r in rows} == {"owns": "frozen", "borrowed": "pending"}
