"""A cancel that commits while a close is running wins: the intent never trades."""

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
