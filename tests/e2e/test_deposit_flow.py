"""One deposit through every service, as processes on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import aio_pika
import pytest

from shared.contracts import CloseWindow, GetAccount, GetFeed, GetPortfolio, OpenAccount, PieSpec, SetPie, SetPrices
from tests.support import eventually, fetch, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

SIXTY_FORTY = PieSpec.model_validate(
    {"name": "Balanced 60/40", "slices": [{"symbol": "VTI", "target": 60}, {"symbol": "BND", "target": 40}]}
)


async def publish_deposit_as_the_bank(url: str, deposit_id: str, account_id: str, amount: str) -> None:
    """Exactly the fixed contract of DESIGN.md, with plain aio-pika."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("m1.events")
        body = {"deposit_id": deposit_id, "account_id": account_id, "amount": amount, "currency": "USD",
                "received_at": "2026-11-25T09:15:00-05:00"}
        await exchange.publish(
            aio_pika.Message(json.dumps(body).encode("utf-8"), message_id=deposit_id,
                             content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="funding.deposit.received",
        )
    finally:
        await connection.close()


async def assert_books_balance(database_url: str) -> None:
    unbalanced = await fetch(database_url, """SELECT entry_id, asset, sum(amount) FROM ledger.postings
                                              GROUP BY entry_id, asset HAVING sum(amount) <> 0""")
    assert unbalanced == []
    # The running customer balances equal the sums of their postings.
    drift = await fetch(database_url, """SELECT p.book, p.asset, b.amount, p.total
                                         FROM (SELECT book, asset, sum(amount) AS total FROM ledger.postings
                                               WHERE book LIKE 'customer:%' GROUP BY book, asset) p
                                         LEFT JOIN ledger.balances b USING (book, asset)
                                         WHERE b.amount IS DISTINCT FROM p.total""")
    assert drift == []
    # Customer cash + firm street/residue cash = money the bank sent in minus money sent out.
    bank = await fetchval(database_url, "SELECT coalesce(sum(amount), 0) FROM ledger.postings "
                                        "WHERE book = 'firm:bank' AND asset = 'USD'")
    others = await fetchval(database_url, "SELECT coalesce(sum(amount), 0) FROM ledger.postings "
                                          "WHERE book <> 'firm:bank' AND asset = 'USD'")
    assert others == -bank


async def test_a_deposit_is_invested_booked_and_notified_once(system, client):
    settings = system.settings
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    await client.call(SetPrices(prices={"VTI": "250.00", "BND": "72.50"}))
    await client.call(OpenAccount(account_id=account))
    await eventually(lambda: _pie_accepts(client, account))  # the pie service has seen the account
    deposit_id = str(uuid.uuid4())
    await publish_deposit_as_the_bank(settings.rabbitmq_url, deposit_id, account, "1000.00")

    view = await eventually(lambda: _portfolio_if(client, account, lambda v: Decimal(v["pending_buys"]) > 0))
    assert Decimal(view["pending_buys"]) == Decimal("1000.00")
    # The intents reach the window as an event of their own: wait until it holds them.
    await eventually(lambda: fetchval(settings.database_url, 'SELECT count(*) = 2 FROM "window".intents '
                                                             "WHERE account_id = $1", account))
    closing = await client.call(CloseWindow())
    orders = {o["symbol"]: (o["side"], Decimal(o["notional"])) for o in closing["orders"]}
    assert orders["VTI"] == ("buy", Decimal("600.00")) and orders["BND"] == ("buy", Decimal("400.00"))

    view = await eventually(lambda: _portfolio_if(
        client, account, lambda v: Decimal(v["invested"]) > 0 and Decimal(v["pending_buys"]) == 0))
    balances = await client.call(GetAccount(account_id=account))
    assert Decimal(balances["cash"]) == Decimal("0.00")
    # $600 / $250.00 = 2.4 shares; $400 / $72.50 = 5.517241... -> 5.51724 (rounded down to 1/100,000)
    assert {k: Decimal(v) for k, v in balances["positions"].items()} == {"VTI": Decimal("2.40000"),
                                                                          "BND": Decimal("5.51724")}
    slices = {s["symbol"]: s for s in view["slices"]}
    assert Decimal(slices["VTI"]["value"]) == Decimal("600.00")
    assert Decimal(slices["BND"]["value"]) == Decimal("400.00")  # 5.51724 x 72.50 = 399.9999
    await assert_books_balance(settings.database_url)
    feed = (await eventually(lambda: _feed_if(client, account, 2)))
    kinds = [e["kind"] for e in feed]
    assert len(feed) == 2 and any("deposit" in k for k in kinds) and any("trade" in k for k in kinds)

    # The bank sends the same deposit again: nothing changes anywhere.
    await publish_deposit_as_the_bank(settings.rabbitmq_url, deposit_id, account, "1000.00")
    marker_account = f"e2e-{uuid.uuid4().hex[:8]}"
    await client.call(OpenAccount(account_id=marker_account))
    marker = str(uuid.uuid4())
    await publish_deposit_as_the_bank(settings.rabbitmq_url, marker, marker_account, "1.00")
    await eventually(lambda: fetchval(settings.database_url,
                                      "SELECT count(*) FROM ledger.funding WHERE funding_id = $1", uuid.UUID(marker)))
    await eventually(lambda: _feed_if(client, marker_account, 1))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.entries WHERE reference = $1",
                          deposit_id) == 1
    assert (await client.call(GetAccount(account_id=account)))["cash"] == "0.00"
    assert len((await client.call(GetFeed(account_id=account)))["entries"]) == 2
    again = await client.call(GetPortfolio(account_id=account))
    assert again["pending_buys"] == "0.00" and again["total"] == view["total"]
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def _pie_accepts(client, account):
    try:
        await client.call(SetPie(account_id=account, pie=SIXTY_FORTY))
        return True
    except Exception:
        return False


async def _portfolio_if(client, account, predicate):
    view = await client.call(GetPortfolio(account_id=account))
    return view if predicate(view) else None


async def _feed_if(client, account, n):
    entries = (await client.call(GetFeed(account_id=account)))["entries"]
    return entries if len(entries) >= n else None
