"""Dynamic rebalancing through every service, as processes on the real RabbitMQ and
PostgreSQL: a deposit into a drifted portfolio, a withdrawal funded by sells, a removed
slice liquidated and reinvested."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from shared.contracts import (
    CloseWindow,
    GetAccount,
    GetFeed,
    GetPortfolio,
    OpenAccount,
    PieSpec,
    SetPie,
    SetPrices,
    SetSettings,
)
from tests.e2e.test_deposit_flow import assert_books_balance
from tests.support import eventually, fetch, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SIXTY_FORTY = PieSpec.model_validate(
    {"name": "Balanced", "slices": [{"symbol": "VTI", "target": 60}, {"symbol": "BND", "target": 40}]}
)


async def portfolio_if(client, account, predicate):
    view = await client.call(GetPortfolio(account_id=account))
    return view if predicate(view) else None


def by_symbol(view) -> dict[str, Decimal]:
    return {s["symbol"]: D(s["value"]) for s in view["slices"] if s["symbol"]}


async def pending(settings, account) -> list[tuple[str, str, Decimal | str]]:
    """The account's pending intents: symbol, side, and dollars (or ``"N shares"``)."""
    rows = await fetch(settings.database_url, "SELECT symbol, side, amount, quantity FROM pie.intents "
                                              "WHERE account_id = $1 AND status = 'pending' ORDER BY symbol", account)
    return [(r["symbol"], r["side"], r["amount"] if r["amount"] is not None else f"{r['quantity']} shares")
            for r in rows]


async def settled(settings, account) -> bool:
    """No intent of the account pending in the pie, and nothing in the ledger's or pie's outbox."""
    return not await pending(settings, account) and await fetchval(
        settings.database_url, "SELECT (SELECT count(*) FROM ledger.outbox) + (SELECT count(*) FROM pie.outbox) = 0")


async def close_window(client, settings, account) -> None:
    """Close the window once it holds every intent the pie submitted for the account."""
    await eventually(lambda: fetchval(settings.database_url, """
        SELECT count(*) = 0 FROM pie.intents p WHERE p.account_id = $1 AND p.status = 'pending'
        AND NOT EXISTS (SELECT 1 FROM "window".intents w WHERE w.intent_id = p.intent_id)""", account))
    await client.call(CloseWindow())


async def invested_account(client, settings, prices: dict[str, str], amount: str = "1000.00") -> str:
    """An account with a 60/40 pie whose first deposit went through a window."""
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    await client.call(SetPrices(prices=prices))
    await client.call(OpenAccount(account_id=account))
    await eventually(lambda: pie_set(client, account))
    await client.deposit(account, D(amount))
    await eventually(lambda: pending(settings, account))
    await close_window(client, settings, account)
    await eventually(lambda: portfolio_if(client, account, lambda v: D(v["invested"]) > 0
                                          and D(v["pending_buys"]) == 0))
    return account


async def pie_set(client, account: str, pie: PieSpec = SIXTY_FORTY) -> bool:
    """Set the account's pie; False while the pie service has not heard of the account."""
    try:
        await client.call(SetPie(account_id=account, pie=pie))
        return True
    except Exception:
        return False


async def test_a_second_deposit_into_a_drifted_portfolio_buys_only_the_underweight_slice(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00"})  # 600 / 400
    await client.call(SetPrices(prices={"VTI": "500.00", "BND": "80.00"}))  # VTI 1200 of 1600: 75%
    await eventually(lambda: portfolio_if(client, account, lambda v: by_symbol(v)["VTI"] == D("1200.00")))
    await client.deposit(account, D("400.00"))
    assert await eventually(lambda: pending(settings, account)) == [("BND", "buy", D("400.00"))]
    await close_window(client, settings, account)
    view = await eventually(lambda: portfolio_if(client, account, lambda v: by_symbol(v)["BND"] == D("800.00")))
    assert by_symbol(view)["VTI"] == D("1200.00")
    await eventually(lambda: settled(settings, account))
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def test_a_withdrawal_sells_the_overweight_slice_and_pays_out_after_the_window(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00"})
    await client.call(SetPrices(prices={"VTI": "500.00", "BND": "80.00"}))  # VTI 1200, BND 400
    await eventually(lambda: portfolio_if(client, account, lambda v: by_symbol(v)["VTI"] == D("1200.00")))
    withdrawal = await client.withdraw(account, D("300.00"))  # no cash: all from sells, VTI first
    assert await eventually(lambda: pending(settings, account)) == [("VTI", "sell", D("300.00"))]
    assert await fetchval(settings.database_url, "SELECT status FROM ledger.pending_withdrawals "
                                                 "WHERE withdrawal_id = $1", withdrawal.withdrawal_id) == "pending"
    await close_window(client, settings, account)
    await eventually(lambda: fetchval(settings.database_url, "SELECT status = 'paid' FROM ledger.pending_withdrawals "
                                                             "WHERE withdrawal_id = $1", withdrawal.withdrawal_id))
    balances = await client.call(GetAccount(account_id=account))
    assert D(balances["cash"]) == D("0.00")
    view = await eventually(lambda: portfolio_if(client, account, lambda v: by_symbol(v)["VTI"] == D("900.00")))
    assert by_symbol(view)["BND"] == D("400.00")
    feed = await eventually(lambda: _feed_with(client, account, "withdrawal"))
    assert any("300.00" in e["message"] for e in feed)
    await eventually(lambda: settled(settings, account))
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def test_a_withdrawal_sells_only_what_its_cash_lacks_and_comes_before_the_pending_buys(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00"})  # 600 / 400
    await client.deposit(account, D("500.00"))
    assert await eventually(lambda: pending(settings, account)) == [("BND", "buy", D("200.00")),
                                                                     ("VTI", "buy", D("300.00"))]
    # $800 out of $500 cash: the pie sells the $300 short, not the $800 the pending buys would
    # leave short; at the window the withdrawal's cash comes first and the buys get none.
    withdrawal = await client.withdraw(account, D("800.00"))
    sells = await eventually(lambda: _sells(settings, account))
    assert sum(amount for _, _, amount in sells) == D("300.00")  # as the pie would stand after its buys: 60/40
    await close_window(client, settings, account)
    await asyncio.sleep(8)
    for sql in ("SELECT symbol, side, amount, status FROM pie.intents WHERE account_id = $1",
                "SELECT * FROM ledger.pending_withdrawals WHERE account_id = $1",
                "SELECT book, amount FROM ledger.balances WHERE book LIKE 'customer:' || $1 || '%'",
                "SELECT * FROM ledger.window_holds WHERE account_id = $1",
                "SELECT symbol, side, amount, status, reason FROM \"window\".intents WHERE account_id = $1"):
        try:
            print("DEBUG", sql, [dict(r) for r in await fetch(settings.database_url, sql, account)])
        except Exception as exc:
            print("DEBUG", sql, exc)
    await eventually(lambda: fetchval(settings.database_url, "SELECT status = 'paid' FROM ledger.pending_withdrawals "
                                                             "WHERE withdrawal_id = $1", withdrawal.withdrawal_id))
    view = await eventually(lambda: portfolio_if(client, account, lambda v: D(v["invested"]) == D("700.00")))
    assert by_symbol(view) == {"VTI": D("420.00"), "BND": D("280.00")} and D(view["cash"]) == D("0.00")
    buys = await fetch(settings.database_url, "SELECT status FROM pie.intents WHERE account_id = $1 AND side = 'buy' "
                                              "AND amount IN (300.00, 200.00)", account)
    assert [r["status"] for r in buys] == ["rejected", "rejected"]  # cut at the window, and the holder told why
    assert await eventually(lambda: _feed_with(client, account, "insufficient cash"))
    await eventually(lambda: settled(settings, account))
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)


async def test_a_withdrawal_above_the_withdrawable_value_is_rejected_with_the_reason(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00"}, amount="100.00")
    withdrawal = await client.withdraw(account, D("100.01"))
    reason = await eventually(lambda: fetchval(
        settings.database_url, "SELECT reason FROM ledger.pending_withdrawals "
                               "WHERE withdrawal_id = $1 AND status = 'rejected'", withdrawal.withdrawal_id))
    assert reason == "withdrawal of $100.01 exceeds the withdrawable value $100.00 (cash $0.00 + investments $100.00)"
    feed = await eventually(lambda: _feed_with(client, account, "rejected"))
    assert any("exceeds the withdrawable value" in e["message"] for e in feed)
    assert await pending(settings, account) == []
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def test_removing_a_slice_liquidates_it_and_reinvests_in_the_pie_with_auto_invest_off(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00", "VXUS": "50.00"})
    await client.call(SetSettings(account_id=account, auto_invest=False))
    three = PieSpec.model_validate({"name": "Balanced", "slices": [
        {"symbol": "VTI", "target": 60}, {"symbol": "VXUS", "target": 40}]})
    await client.call(SetPie(account_id=account, pie=three))
    # BND goes whole: its 5 shares are sold by quantity.
    assert await eventually(lambda: pending(settings, account)) == [("BND", "sell", "5.00000 shares")]
    await close_window(client, settings, account)
    # The proceeds come back as cash and are reinvested in the same pie, by the deposit rule:
    # VXUS (0 of 40%) is the underweight slice.
    await eventually(lambda: _pending_is(settings, account, [("VXUS", "buy", D("400.00"))]))
    await close_window(client, settings, account)
    view = await eventually(lambda: portfolio_if(client, account, lambda v: by_symbol(v).get("VXUS") == D("400.00")))
    assert by_symbol(view) == {"VTI": D("600.00"), "VXUS": D("400.00")}
    await eventually(lambda: settled(settings, account))
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def _sells(settings, account) -> list[tuple[str, str, Decimal | str]]:
    return [p for p in await pending(settings, account) if p[1] == "sell"]


async def _feed_with(client, account, word):
    entries = (await client.call(GetFeed(account_id=account)))["entries"]
    hits = [e for e in entries if word in e["kind"] or word in e["message"]]
    return hits or None


async def _pending_is(settings, account, expected):
    return await pending(settings, account) == expected


def m1(settings, *args: str) -> str:
    env = {**os.environ, "M1_RABBITMQ_URL": settings.rabbitmq_url, "M1_DATABASE_URL": settings.database_url,
           "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "m1.cli", *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_the_cli_applies_models_changes_settings_rebalances_and_cancels(system, client):
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00", "VXUS": "50.00"})
    models = await asyncio.to_thread(m1, settings, "pie", "models")
    assert "three-fund" in models and "core-satellite" in models
    assert "VXUS" in await asyncio.to_thread(m1, settings, "pie", "models", "three-fund")
    assert "auto-invest off" in await asyncio.to_thread(m1, settings, "settings", account, "--no-auto-invest",
                                                        "--minimum-cash", "10.00")
    assert "model three-fund" in await asyncio.to_thread(m1, settings, "pie", "apply", account, "three-fund")
    shown = await asyncio.to_thread(m1, settings, "pie", "show", account)
    assert "50%  VTI" in shown and "30%  VXUS" in shown
    # Held: VTI 600 (target 50%), BND 400 (20%), VXUS 0 (30%): sell VTI 100, BND 200; buy VXUS 300.
    plan = json.loads(await asyncio.to_thread(m1, settings, "rebalance", account, "--json"))
    assert [(t["symbol"], t["side"], t["amount"]) for t in plan["trades"]] == [
        ("VTI", "sell", "100.00"), ("VXUS", "buy", "300.00"), ("BND", "sell", "200.00")]
    assert plan["estimated_gain"] == "0.00"  # bought at today's prices
    await eventually(lambda: fetchval(settings.database_url, 'SELECT count(*) = 3 FROM "window".intents '
                                                             "WHERE batch_id = $1", uuid.UUID(plan["batch_id"])))
    assert "cancelled 3 intents" in await asyncio.to_thread(m1, settings, "rebalance", account,
                                                            "--cancel", plan["batch_id"])
    assert await pending(settings, account) == []
    table = await asyncio.to_thread(m1, settings, "portfolio", account)
    assert "drift" in table and "+10.00" in table  # VTI 60% of a 50% target
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check


async def test_withdrawing_everything_sells_every_share_once_even_when_the_price_falls_before_the_window(
        system, client):
    """The whole portfolio is withdrawn at the last prices; they fall 10% before the window.
    Every slice is sold by share quantity, so no position goes below zero; the sales raise
    less than the withdrawal, nothing is left to sell, and the withdrawal is refused with
    the reason while the proceeds stay in cash."""
    settings = system.settings
    account = await invested_account(client, settings, {"VTI": "250.00", "BND": "80.00"})  # 600 / 400
    withdrawal = await client.withdraw(account, D("1000.00"))
    assert await eventually(lambda: pending(settings, account)) == [("BND", "sell", "5.00000 shares"),
                                                                    ("VTI", "sell", "2.40000 shares")]
    await client.call(SetPrices(prices={"VTI": "225.00", "BND": "72.00"}))
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) = 2 FROM \"window\".prices "
                                                             "WHERE (symbol, price) IN (('VTI', 225), ('BND', 72))"))
    await close_window(client, settings, account)
    reason = await eventually(lambda: fetchval(
        settings.database_url, "SELECT reason FROM ledger.pending_withdrawals "
                               "WHERE withdrawal_id = $1 AND status = 'rejected'", withdrawal.withdrawal_id))
    assert "nothing left to sell" in reason
    balances = await client.call(GetAccount(account_id=account))
    assert D(balances["cash"]) == D("900.00")  # 2.4 × 225 + 5 × 72
    assert all(D(q) == 0 for q in balances["positions"].values())
    feed = await eventually(lambda: _feed_with(client, account, "rejected"))
    assert any("nothing left to sell" in e["message"] for e in feed)
    await eventually(lambda: settled(settings, account))
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check
