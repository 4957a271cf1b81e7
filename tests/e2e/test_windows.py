"""Trade windows through every service as processes: orders are funded before automated
trades when cash is short, a halted security carries over and its holder is told why, and
the ledger reconciles with the window after each window."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from shared.contracts import (
    CloseWindow,
    GetAccount,
    GetFeed,
    GetWindow,
    HaltSecurity,
    Intent,
    IntentsSubmitted,
    IntentSource,
    OpenAccount,
    ResumeSecurity,
    SetPrices,
    Side,
)
from tests.e2e.test_deposit_flow import assert_books_balance
from tests.support import eventually, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

D = Decimal


def new_symbol() -> str:
    return "E" + uuid.uuid4().hex[:6].upper()


async def window_reconciles(database_url: str, window_id: str) -> None:
    """Every fill of the window is in the ledger (per account cash and shares), the window's
    clearing book is zero, and the books balance."""
    batches = await eventually(lambda: fetchval(
        database_url, 'SELECT batches FROM "window".windows WHERE window_id = $1 AND status = $2',
        uuid.UUID(window_id), "allocated"))
    await eventually(lambda: fetchval(
        database_url, "SELECT count(*) = $2 FROM ledger.entries WHERE kind = 'fill' AND reference LIKE $1",
        f"{window_id}:%", batches))
    mismatched = await fetchval(database_url, """
        WITH w AS (SELECT 'customer:' || account_id || ':securities' AS book, symbol AS asset,
                          sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END) AS amount
                   FROM "window".fills WHERE window_id = $1 GROUP BY 1, 2
                   UNION ALL
                   SELECT 'customer:' || account_id || ':cash', 'USD',
                          sum(CASE side WHEN 'buy' THEN -amount ELSE amount END)
                   FROM "window".fills WHERE window_id = $1 GROUP BY 1, 2),
             l AS (SELECT p.book, p.asset, sum(p.amount) AS amount FROM ledger.postings p
                   JOIN ledger.entries e USING (entry_id)
                   WHERE e.kind = 'fill' AND e.reference LIKE $2 AND p.book LIKE 'customer:%' GROUP BY 1, 2)
        SELECT count(*) FROM w FULL JOIN l USING (book, asset) WHERE w.amount IS DISTINCT FROM l.amount""",
        uuid.UUID(window_id), f"{window_id}:%")
    assert mismatched == 0
    clearing = await fetchval(database_url, "SELECT count(*) FROM (SELECT asset FROM ledger.postings WHERE book = $1 "
                                            "GROUP BY asset HAVING sum(amount) <> 0) t", f"firm:clearing:{window_id}")
    assert clearing == 0
    await assert_books_balance(database_url)


async def test_orders_go_first_and_a_halted_security_carries_over_and_is_notified(system, client):
    settings = system.settings
    halted, trading = new_symbol(), new_symbol()
    await client.call(SetPrices(prices={halted: "10.00", trading: "20.00"}))
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    await client.call(OpenAccount(account_id=account))
    await client.deposit(account, D("100.00"))
    await eventually(lambda: fetchval(settings.database_url, 'SELECT cash = 100 FROM "window".cash WHERE account_id = $1',
                                      account))
    await client.call(HaltSecurity(symbol=halted, reason="news pending"))

    def intent(symbol: str, amount: str, source: IntentSource) -> Intent:
        return Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=Side.BUY, amount=amount,
                      source=source)

    order, auto, stuck = (intent(trading, "60.00", IntentSource.ORDER), intent(trading, "60.00", IntentSource.AUTO_INVEST),
                          intent(halted, "20.00", IntentSource.AUTO_INVEST))
    batch = IntentsSubmitted(account_id=account, batch_id=uuid.uuid4(), intents=[auto, stuck, order])
    await client.publish_event(batch, str(uuid.uuid4()))
    await eventually(lambda: fetchval(settings.database_url,
                                      'SELECT count(*) = 3 FROM "window".intents WHERE batch_id = $1', batch.batch_id))

    first = await client.call(CloseWindow())
    # $100: the order's $60 first; $40 left for $80 of automated buys, scaled by half.
    assert [(o["symbol"], o["notional"]) for o in first["orders"]] == sorted(
        [(trading, "90.00"), (halted, "10.00")])
    await window_reconciles(settings.database_url, first["window_id"])
    assert (await client.call(GetAccount(account_id=account)))["cash"] == "10.00"
    view = await client.call(GetWindow(window_id=uuid.UUID(first["window_id"])))
    assert view["summary"]["carried_over"] == 1 and view["summary"]["halted"] == {halted: "news pending"}

    async def carried_note():
        entries = (await client.call(GetFeed(account_id=account)))["entries"]
        return [e for e in entries if e["kind"] == "intents_carried_over"]

    [note] = await eventually(carried_note)
    assert halted in note["message"] and "news pending" in note["message"]

    await client.call(ResumeSecurity(symbol=halted))
    await eventually(lambda: fetchval(settings.database_url, 'SELECT cash = 10 FROM "window".cash WHERE account_id = $1',
                                      account))  # the window has seen the ledger's cash after the fills
    second = await client.call(CloseWindow())
    # The carried-over $20 buy is funded again from what the account now holds: $10.
    assert [(o["symbol"], o["notional"]) for o in second["orders"]] == [(halted, "10.00")]
    await window_reconciles(settings.database_url, second["window_id"])
    assert (await client.call(GetAccount(account_id=account)))["cash"] == "0.00"
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check
