"""Services killed with SIGKILL mid-stream lose nothing and book nothing twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest

from shared.contracts import DepositReceived, OpenAccount
from tests.e2e.test_deposit_flow import assert_books_balance
from tests.support import eventually, fetch, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

ACCOUNTS = 20
DEPOSITS = 400


async def test_killing_ledger_and_notification_mid_stream_loses_and_duplicates_nothing(system, client):
    settings = system.settings
    accounts = [f"crash-{uuid.uuid4().hex[:8]}" for _ in range(ACCOUNTS)]
    for account in accounts:
        await client.call(OpenAccount(account_id=account))
    expected: dict[str, Decimal] = defaultdict(Decimal)
    events = []
    for i in range(DEPOSITS):
        account = accounts[i % ACCOUNTS]
        amount = Decimal(f"{1 + i % 97}.{i % 100:02d}")
        expected[account] += amount
        events.append(DepositReceived(deposit_id=uuid.uuid4(), account_id=account, amount=amount,
                                      currency="USD", received_at="2026-11-25T10:00:00+00:00"))
    booked = "SELECT count(*) FROM ledger.funding WHERE account_id = ANY($1::text[])"

    publishing = asyncio.create_task(_publish_all(client, events))
    await eventually(lambda: _at_least(settings.database_url, booked, accounts, 20), timeout=30, interval=0.02)
    system.kill("ledger")
    system.kill("notification")
    await publishing
    system.start_one("ledger")
    system.start_one("notification")
    assert not system.wait_healthy(timeout=60, names=["ledger", "notification"])

    await eventually(lambda: _at_least(settings.database_url, booked, accounts, DEPOSITS), timeout=60)
    assert await fetchval(settings.database_url, booked, accounts) == DEPOSITS
    rows = await fetch(settings.database_url,
                       "SELECT book, amount FROM ledger.balances WHERE asset = 'USD' AND book = ANY($1::text[])",
                       [f"customer:{a}:cash" for a in accounts])
    assert {r["book"].split(":")[1]: r["amount"] for r in rows} == dict(expected)
    await assert_books_balance(settings.database_url)
    # Every deposit is told to its holder exactly once, even though the relay may re-send.
    notified = "SELECT count(*) FROM notification.feed WHERE account_id = ANY($1::text[])"
    await eventually(lambda: _at_least(settings.database_url, notified, accounts, DEPOSITS), timeout=60)
    await asyncio.sleep(1.0)
    assert await fetchval(settings.database_url, notified, accounts) == DEPOSITS
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def _publish_all(client, events):
    for event in events:
        await client.publish_event(event, str(event.deposit_id))


async def _at_least(url, sql, accounts, n):
    return await fetchval(url, sql, accounts) >= n
