"""Margin through every service, as processes on the real RabbitMQ and PostgreSQL: a loan
invested by the pie; a price drop issues a call and a notification; a deposit meets it; a
second drop past the deadline liquidates in the next window and the proceeds repay the loan;
IRA and custodial accounts never borrow; the ledger balances throughout."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from m1.client import ServiceError
from services.margin import domain
from shared.contracts import (
    BorrowMargin,
    CheckCalls,
    GetFeed,
    GetMarginStatus,
    OpenAccount,
    PieSpec,
    SetPrices,
    SetSecurityActive,
)
from tests.e2e.test_deposit_flow import assert_books_balance
from tests.e2e.test_pie_flow import close_window, invested_account, pending, pie_set, settled
from tests.integration.test_order_margin import new_symbol
from tests.support import eventually, fetch, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

D = Decimal


async def status(client, account: str) -> dict:
    return await client.call(GetMarginStatus(account_id=account))


async def status_if(client, account: str, predicate) -> dict | None:
    try:
        view = await status(client, account)
    except ServiceError:  # the account's opening has not reached the margin service yet
        return None
    return view if predicate(view) else None


async def feed_kinds(client, account: str) -> list[str]:
    view = await client.call(GetFeed(account_id=account))
    return [e["kind"] for e in view["entries"]]


async def feed_has(client, account: str, kind: str) -> bool:
    return kind in await feed_kinds(client, account)


async def test_call_met_by_a_deposit_then_liquidated_after_the_deadline(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00"}, amount="5000.00")
    await eventually(lambda: status_if(client, account, lambda v: D(v["market_value"]) >= D("4999")))

    # borrow 2,000 (40% of 5,000 is the limit); the pie invests the borrowed cash
    reply = await client.call(BorrowMargin(account_id=account, amount=D("2000.00")))
    assert D(reply["borrowing_power"]) < D("1")
    await eventually(lambda: pending(settings, account))
    await close_window(client, settings, account)
    view = await eventually(lambda: status_if(client, account, lambda v: D(v["loan"]) == D("2000.00")
                                              and D(v["market_value"]) >= D("6998") and D(v["cash"]) < 1))
    assert view["call"] is None
    assert await eventually(lambda: feed_has(client, account, "margin_loan_drawn"))

    # a 60% drop: equity = mv + cash - 2,000 falls under 30% of mv
    await client.call(SetPrices(prices={"VTI": "100.00", "BND": "32.00"}))
    view = await eventually(lambda: status_if(client, account, lambda v: v["call"] is not None))
    call = view["call"]
    assert call["status"] == "open"
    assert D(call["amount_due"]) == domain.cents_up(D(view["requirement"]) - D(view["equity"])) or \
        abs(D(call["amount_due"]) - (D(view["requirement"]) - D(view["equity"]))) <= D("0.01")
    assert await eventually(lambda: feed_has(client, account, "margin_call_issued"))

    # a deposit of the amount due meets it
    await client.deposit(account, D(call["amount_due"]))
    view = await eventually(lambda: status_if(client, account, lambda v: v["call"]["status"] == "met"))
    assert D(view["equity"]) >= D(view["requirement"])
    assert await eventually(lambda: feed_has(client, account, "margin_call_met"))
    # Once the pie has seen the deposit's cash (its projection at the ledger's version), it
    # has invested it or not in that same transaction: trade what it submitted.
    await eventually(lambda: fetchval(settings.database_url, "SELECT p.version >= l.version FROM pie.accounts p "
                                      "JOIN ledger.accounts l USING (account_id) WHERE account_id = $1", account))
    if await pending(settings, account):  # the deposit was invested: its buys traded and booked
        await close_window(client, settings, account)
        await eventually(lambda: settled(settings, account))

    # a second drop; the call is not met by its deadline: liquidation in the next window
    # (auto-invest stays on: a liquidation's proceeds are not invested, they repay the loan)
    await client.call(SetPrices(prices={"VTI": "96.00", "BND": "30.72"}))  # 4% more: under 30%, over 25%
    view = await eventually(lambda: status_if(client, account, lambda v: v["call"]["status"] == "open"))
    loan_before = D(view["loan"])
    deadline = datetime.fromisoformat(view["call"]["deadline"])
    checked = await client.call(CheckCalls(at=deadline + timedelta(seconds=1)))
    assert account in checked["liquidated"]
    view = await eventually(lambda: status_if(client, account, lambda v: v["call"]["status"] == "liquidating"))
    amount = D(view["call"]["liquidation_amount"])
    assert await eventually(lambda: feed_has(client, account, "margin_call_liquidated"))
    sells = await eventually(lambda: pending(settings, account))
    assert all(side == "sell" for _, side, _ in sells), sells
    assert sum(a for _, _, a in sells) == amount  # overweight slices first, exactly the amount
    rows = await fetch(settings.database_url, "SELECT DISTINCT source FROM pie.intents WHERE account_id = $1 "
                       "AND status = 'pending'", account)
    assert [r["source"] for r in rows] == ["liquidation"]

    await close_window(client, settings, account)
    view = await eventually(lambda: status_if(client, account, lambda v: v["call"]["status"] == "liquidated"
                                              and D(v["loan"]) < loan_before), timeout=60)
    repaid = loan_before - D(view["loan"])
    assert amount - D("0.05") <= repaid <= amount  # the proceeds, up to the liquidation amount
    assert D(view["equity"]) >= D(view["requirement"])  # the liquidation restored the requirement
    assert await eventually(lambda: feed_has(client, account, "margin_loan_repaid"))
    assert await pending(settings, account) == []  # nothing of the proceeds was invested again
    await assert_books_balance(settings.database_url)
    rows = await fetch(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = $1",
                       f"customer:{account}:loan")
    assert rows[0]["amount"] == -D(view["loan"])
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


@pytest.mark.parametrize("kind", ["traditional_ira", "roth_ira", "sep_ira", "custodial"])
async def test_ira_and_custodial_accounts_can_never_borrow(system, client, kind):
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    await client.call(OpenAccount(account_id=account, kind=kind))
    await client.deposit(account, D("10000.00"))
    await eventually(lambda: status_if(client, account, lambda v: v["cash"] == "10000.00"))
    with pytest.raises(ServiceError, match="individual, joint, trust accounts only"):
        await client.call(BorrowMargin(account_id=account, amount=D("1.00")))
    view = await status(client, account)
    assert not view["eligible"] and view["loan"] == "0.00"


async def test_a_liquidation_the_venue_refuses_closes_with_nothing_raised_and_the_account_is_called_again(
        system, client):
    """The liquidation's sells are planned, then both securities are delisted before the
    window: the venue refuses them, the window rejects them, and the margin service closes
    the call instead of waiting for fills that will never come."""
    settings = system.settings
    a, b = new_symbol(), new_symbol()
    await client.call(SetPrices(prices={a: "100.00", b: "50.00"}))
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    await client.call(OpenAccount(account_id=account))
    pie = PieSpec.model_validate({"name": "Two", "slices": [{"symbol": a, "target": 50}, {"symbol": b, "target": 50}]})
    await eventually(lambda: pie_set(client, account, pie))
    await client.deposit(account, D("4000.00"))
    await eventually(lambda: pending(settings, account))
    await close_window(client, settings, account)
    await eventually(lambda: status_if(client, account, lambda v: D(v["market_value"]) >= D("3999")))
    await client.call(BorrowMargin(account_id=account, amount=D("1600.00")))  # invested by the pie
    await eventually(lambda: pending(settings, account))
    await close_window(client, settings, account)
    await eventually(lambda: status_if(client, account, lambda v: D(v["loan"]) == D("1600.00")
                                       and D(v["market_value"]) >= D("5598") and D(v["cash"]) < 1))

    # a 60% fall: a call (equity 640 under the requirement 672), unmet at its deadline
    await client.call(SetPrices(prices={a: "40.00", b: "20.00"}))
    view = await eventually(lambda: status_if(client, account, lambda v: (v["call"] or {}).get("status") == "open"))
    first = view["call"]
    checked = await client.call(CheckCalls(at=datetime.fromisoformat(first["deadline"]) + timedelta(seconds=1)))
    assert account in checked["liquidated"]
    sells = await eventually(lambda: pending(settings, account))
    assert {symbol for symbol, _, _ in sells} == {a, b} and {side for _, side, _ in sells} == {"sell"}

    for symbol in (a, b):
        await client.call(SetSecurityActive(symbol=symbol, active=False, reason="delisted"))
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) = 2 FROM pie.prices "
                                      "WHERE symbol = ANY($1::text[]) AND delisted IS NOT NULL", [a, b]))
    await close_window(client, settings, account)

    # nothing sold: the call is closed with nothing raised, and a new one is issued
    view = await eventually(lambda: status_if(client, account, lambda v: v["call"]["status"] == "open"
                                              and v["call"]["call_id"] != first["call_id"]), timeout=60)
    assert D(view["loan"]) == D("1600.00")
    assert D(view["call"]["amount_due"]) == D(first["amount_due"])
    rows = await fetch(settings.database_url, "SELECT status, raised FROM margin.calls WHERE account_id = $1 "
                                              "ORDER BY issued_at", account)
    assert [(r["status"], r["raised"]) for r in rows] == [("liquidated", D("0.00")), ("open", D("0.00"))]
    assert await pending(settings, account) == []  # the pie marked the refused sells rejected
    await assert_books_balance(settings.database_url)
