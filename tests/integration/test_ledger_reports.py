"""Settlement and holds, the month statement, the beancount export and the audit, against the
real RabbitMQ and PostgreSQL. Each test runs the ledger on a database of its own, so the
audit sees only its books, with T+1 settlement and the 6-business-day deposit hold on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from services.ledger import report_handlers
from shared.contracts import (
    AuditLedger,
    Execution,
    ExportJournal,
    Fill,
    FillsAllocated,
    GetAccount,
    GetStatement,
    HoldWindowCash,
    OpenAccount,
    PricesChanged,
    ReleaseWindowCash,
    Side,
)
from shared.db import drop_database
from tests.conftest import make_service
from tests.support import PG_BASE, eventually, fetch, fetchval, unique_name
from tests.support_ledger import assert_ledger_checks_out, beancount_errors

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(topology_declared):
    settings = topology_declared.model_copy(update={
        "database_url": f"{PG_BASE}/{unique_name('m1_ledger_reports')}",
        "ledger_settlement_days": 1, "ledger_deposit_hold_days": 6, "ledger_settlement_poll_seconds": 3600})
    service = make_service("ledger", settings)
    async with service.running() as svc:
        yield svc
    await drop_database(settings.database_url)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def settle(svc, *message_ids: str) -> None:
    """Wait until the ledger has handled the messages and published what they emitted."""
    url = svc.settings.database_url
    for mid in message_ids:
        await eventually(lambda mid=mid: fetchval(url, "SELECT count(*) FROM ledger.inbox WHERE message_id = $1", mid))
    await eventually(lambda: fetchval(url, "SELECT count(*) = 0 FROM ledger.outbox"))


async def open_account(bus) -> str:
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account))).ok
    return account


async def deposit(svc, bus, account: str, amount: str) -> str:
    did = str(uuid.uuid4())
    await bus.publish_json("funding.deposit.received", {"deposit_id": did, "account_id": account, "amount": amount,
                                                        "currency": "USD", "received_at": svc.clock.now().isoformat()},
                           message_id=did)
    await settle(svc, did)
    return did


async def withdraw(svc, bus, account: str, amount: str) -> uuid.UUID:
    wid = str(uuid.uuid4())
    await bus.publish_json("funding.withdrawal.requested",
                           {"withdrawal_id": wid, "account_id": account, "amount": amount, "currency": "USD",
                            "requested_at": svc.clock.now().isoformat()}, message_id=wid)
    await settle(svc, wid)
    return uuid.UUID(wid)


async def trade(svc, bus, account: str, side: Side, symbol: str, quantity: str, amount: str) -> None:
    """A window with one account's one fill, executed at exactly its amount (no residue)."""
    q, m = Decimal(quantity), Decimal(amount)
    price = (m / q).quantize(Decimal("0.000001"))
    event = FillsAllocated(
        window_id=uuid.uuid4(),
        executions=[Execution(symbol=symbol, side=side, quantity=q, price=price, amount=m)],
        fills=[Fill(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, quantity=q, amount=m,
                    price=price)],
        residues=[])
    mid = str(uuid.uuid4())
    await bus.publish_json(event.TYPE, event.model_dump(mode="json"), message_id=mid)
    await settle(svc, mid)


async def cash(bus, account: str) -> Decimal:
    reply = await bus.request(GetAccount(account_id=account))
    return Decimal(reply.result["cash"])


async def withdrawal_status(svc, wid: uuid.UUID) -> str | None:
    return await fetchval(svc.settings.database_url,
                          "SELECT status FROM ledger.pending_withdrawals WHERE withdrawal_id = $1", wid)


async def booked(svc, wid: uuid.UUID) -> bool:
    return bool(await fetchval(svc.settings.database_url,
                               "SELECT count(*) FROM ledger.funding WHERE funding_id = $1", wid))


async def refusal(svc, wid: uuid.UUID) -> str | None:
    return await fetchval(svc.settings.database_url,
                          "SELECT reason FROM ledger.dead_letters WHERE message_id = $1", str(wid))


async def test_deposits_can_be_withdrawn_after_six_business_days_skipping_the_holiday(ledger, bus):
    ledger.clock.set(at("2026-11-18T10:00:00-05:00"))  # a Wednesday; Thanksgiving is Thursday 26th
    account = await open_account(bus)
    await deposit(ledger, bus, account, "100.00")

    refused = await withdraw(ledger, bus, account, "50.00")
    reason = await refusal(ledger, refused)
    assert reason is not None and "on hold" in reason and "100.00" in reason
    assert not await booked(ledger, refused)

    ledger.clock.set(at("2026-11-26T10:00:00-05:00"))  # 5 sessions later (the 26th is a holiday)
    assert "on hold" in await refusal(ledger, await withdraw(ledger, bus, account, "50.00"))

    ledger.clock.set(at("2026-11-27T10:00:00-05:00"))  # the 6th session
    paid = await withdraw(ledger, bus, account, "50.00")
    assert await booked(ledger, paid) and await cash(bus, account) == Decimal("50.00")
    await assert_ledger_checks_out(bus)


async def test_sale_proceeds_are_paid_out_when_they_settle_the_next_business_day(ledger, bus):
    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "300.00")
    await trade(ledger, bus, account, Side.BUY, "VTI", "1.00000", "300.00")

    ledger.clock.set(at("2026-11-27T11:00:00-05:00"))  # Friday; the deposit has cleared
    await trade(ledger, bus, account, Side.SELL, "VTI", "0.50000", "160.00")
    proceeds = await cash(bus, account)  # $160.00 less the regulatory fees on the sale
    assert Decimal("159.00") < proceeds <= Decimal("160.00")
    announced = await bus.channel.declare_queue(exclusive=True, auto_delete=True)
    await announced.bind(bus.events, routing_key="ledger.withdrawal.pending")
    held = await withdraw(ledger, bus, account, "100.00")
    assert await withdrawal_status(ledger, held) == "pending"
    # the pie is told (nothing to sell: shortfall 0), so that auto-invest keeps the cash back
    message = await eventually(lambda: announced.get(fail=False, no_ack=True))
    body = json.loads(message.body)
    assert (body["withdrawal_id"], body["amount"], body["shortfall"]) == (str(held), "100.00", "0.00")
    assert Decimal(body["cash"]) == proceeds

    await ledger.settlement_sweep()  # same day: nothing has settled
    assert await withdrawal_status(ledger, held) == "pending"

    ledger.clock.set(at("2026-11-30T09:00:00-05:00"))  # Monday, T+1
    await ledger.settlement_sweep()
    await settle(ledger)
    assert await withdrawal_status(ledger, held) == "paid"
    assert await cash(bus, account) == proceeds - Decimal("100.00")
    await assert_ledger_checks_out(bus)


async def test_a_withdrawal_beyond_the_cash_still_waits_for_the_pie_to_sell(ledger, bus):
    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "100.00")
    await trade(ledger, bus, account, Side.BUY, "VTI", "0.40000", "80.00")
    ledger.clock.set(at("2026-11-20T10:00:00-05:00"))
    wid = await withdraw(ledger, bus, account, "50.00")  # $20 cash, shares to sell: held, not refused
    assert await withdrawal_status(ledger, wid) == "pending"
    assert await refusal(ledger, wid) is None


async def test_a_month_statement(ledger, bus):
    ledger.clock.set(at("2026-10-15T10:00:00-04:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "1000.00")
    await trade(ledger, bus, account, Side.BUY, "VTI", "2.00000", "500.00")

    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    await deposit(ledger, bus, account, "200.00")
    await trade(ledger, bus, account, Side.BUY, "BND", "10.00000", "700.00")
    ledger.clock.set(at("2026-11-20T10:00:00-05:00"))
    await trade(ledger, bus, account, Side.SELL, "VTI", "0.50000", "130.00")
    mid = str(uuid.uuid4())
    prices = PricesChanged(prices={"VTI": Decimal("270.00"), "BND": Decimal("71.123456")},
                           as_of=at("2026-11-20T16:00:00-05:00"))
    await bus.publish_json(prices.TYPE, prices.model_dump(mode="json"), message_id=mid)
    await settle(ledger, mid)
    ledger.clock.set(at("2026-12-03T10:00:00-05:00"))
    await withdraw(ledger, bus, account, "30.00")  # December: not on November's statement

    reply = await bus.request(GetStatement(account_id=account, month="2026-11"))
    assert reply.ok, reply
    s = reply.result
    assert s["opening"] == {"cash": "500.00", "positions": {"VTI": "2.00000"}}
    assert [(m["date"], m["kind"], m["cash"], m["shares"]) for m in s["movements"] if m["kind"] != "fee"] == [
        ("2026-11-02", "deposit", "200.00", {}),
        ("2026-11-02", "fill", "-700.00", {"BND": "10.00000"}),
        ("2026-11-20", "fill", "130.00", {"VTI": "-0.50000"}),
    ]
    fees = sum(Decimal(m["cash"]) for m in s["movements"] if m["kind"] == "fee")  # the sale's regulatory fees
    assert Decimal(s["closing"]["cash"]) == Decimal("130.00") + fees
    assert Decimal(s["closing"]["cash"]) == sum((Decimal(m["cash"]) for m in s["movements"]), Decimal("500.00"))
    assert s["closing"]["positions"] == {"BND": "10.00000", "VTI": "1.50000"}
    holdings = {h["symbol"]: h for h in s["holdings"]}
    # Average cost: three quarters of VTI's $500 is left after selling a quarter of the shares.
    assert (holdings["VTI"]["cost"], holdings["VTI"]["market_value"]) == ("375.00", "405.00")
    assert (holdings["BND"]["cost"], holdings["BND"]["market_value"]) == ("700.00", "711.23")
    assert s["cash"]["settled"] == s["closing"]["cash"] and s["cash"]["unsettled"] == "0.00"
    assert Decimal(s["cash"]["total"]) == Decimal("1116.23") + Decimal(s["closing"]["cash"])

    october = (await bus.request(GetStatement(account_id=account, month="2026-10"))).result
    assert october["opening"] == {"cash": "0.00", "positions": {}}
    assert october["closing"]["cash"] == s["opening"]["cash"]

    future = await bus.request(GetStatement(account_id=account, month="2027-01"))
    assert not future.ok and "not started" in future.reason
    assert not (await bus.request(GetStatement(account_id="nobody", month="2026-11"))).ok


async def test_the_statement_shows_unsettled_cash_until_the_sale_settles(ledger, bus):
    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "100.00")
    await trade(ledger, bus, account, Side.BUY, "VTI", "1.00000", "100.00")
    ledger.clock.set(at("2026-11-27T11:00:00-05:00"))
    await trade(ledger, bus, account, Side.SELL, "VTI", "0.25000", "30.00")
    cash_view = (await bus.request(GetStatement(account_id=account, month="2026-11"))).result["cash"]
    fees = Decimal("30.00") - Decimal(cash_view["cash"])  # the sale's regulatory fees
    assert Decimal("0.00") <= fees < Decimal("1.00")
    # The fees were paid from the unsettled proceeds: settled cash is negative by them.
    assert (cash_view["unsettled"], cash_view["settled"], cash_view["withdrawable"]) == (
        "30.00", format(-fees, "f"), "0.00")
    ledger.clock.set(at("2026-11-30T10:00:00-05:00"))  # Monday: T+1 after Friday
    cash_view = (await bus.request(GetStatement(account_id=account, month="2026-11"))).result["cash"]
    assert (cash_view["settled"], cash_view["unsettled"], cash_view["withdrawable"]) == (
        cash_view["cash"], "0.00", cash_view["cash"])


async def test_the_statement_counts_cash_held_for_a_window_and_waiting_withdrawals_as_not_withdrawable(ledger, bus):
    """This month's statement says what a withdrawal can take now: not the cash a trade
    window's buys hold, nor what withdrawals already waiting will take."""
    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "100.00")
    await trade(ledger, bus, account, Side.BUY, "VTI", "0.50000", "50.00")
    ledger.clock.set(at("2026-11-16T10:00:00-05:00"))  # the deposit has cleared
    window, mid = uuid.uuid4(), str(uuid.uuid4())
    await bus.publish_raw(HoldWindowCash.TYPE, HoldWindowCash(window_id=window, holds=[(account, "30.00")])
                          .model_dump_json().encode(), message_id=mid, exchange="m1.commands")
    await settle(ledger, mid)
    cash = (await bus.request(GetStatement(account_id=account, month="2026-11"))).result["cash"]
    assert (cash["cash"], cash["held_for_trades"], cash["withdrawable"]) == ("50.00", "30.00", "20.00")
    await withdraw(ledger, bus, account, "35.00")  # more than it can take: waits while the pie sells
    cash = (await bus.request(GetStatement(account_id=account, month="2026-11"))).result["cash"]
    assert (cash["waiting_withdrawals"], cash["withdrawable"]) == ("35.00", "0.00")

    mid = str(uuid.uuid4())
    await bus.publish_raw(ReleaseWindowCash.TYPE, ReleaseWindowCash(window_id=window).model_dump_json().encode(),
                          message_id=mid, exchange="m1.commands")
    await settle(ledger, mid)  # the hold released, the waiting withdrawal is paid from it
    cash = (await bus.request(GetStatement(account_id=account, month="2026-11"))).result["cash"]
    assert (cash["cash"], cash["held_for_trades"], cash["waiting_withdrawals"], cash["withdrawable"]) == (
        "15.00", "0.00", "0.00", "15.00")
    # A past month shows only what the journal keeps: its closing cash less what had not cleared.
    ledger.clock.set(at("2026-12-02T10:00:00-05:00"))
    window = uuid.uuid4()
    mid = str(uuid.uuid4())
    await bus.publish_raw(HoldWindowCash.TYPE, HoldWindowCash(window_id=window, holds=[(account, "10.00")])
                          .model_dump_json().encode(), message_id=mid, exchange="m1.commands")
    await settle(ledger, mid)
    november = (await bus.request(GetStatement(account_id=account, month="2026-11"))).result["cash"]
    assert (november["held_for_trades"], november["withdrawable"]) == ("0.00", "15.00")
    december = (await bus.request(GetStatement(account_id=account, month="2026-12"))).result["cash"]
    assert (december["held_for_trades"], december["withdrawable"]) == ("10.00", "5.00")


async def test_the_export_passes_beancounts_checker_and_the_audit_catches_a_tampered_balance(ledger, bus):
    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "100.00")
    await trade(ledger, bus, account, Side.BUY, "BRK.", "0.12345", "33.33")
    await trade(ledger, bus, account, Side.SELL, "BRK.", "0.12345", "34.00")

    export = await bus.request(ExportJournal())
    assert export.ok and export.result["entries"] >= 3  # deposit, buy, sell (and the sale's fees)
    assert beancount_errors(export.result["text"]) == []
    assert "balance Assets:Customers:Id-acc-2D" in export.result["text"]
    clean = await bus.request(AuditLedger())
    assert clean.ok and clean.result["ok"], clean.result["differences"]

    url = ledger.settings.database_url
    await fetch(url, "UPDATE ledger.balances SET amount = amount + 0.01 WHERE book = $1",
                f"customer:{account}:cash")
    report = (await bus.request(AuditLedger())).result
    assert not report["ok"]
    stored = await fetchval(url, "SELECT amount FROM ledger.balances WHERE book = $1", f"customer:{account}:cash")
    assert f"balance customer:{account}:cash USD: table says {stored}, postings sum to {stored - Decimal('0.01')}" \
        in report["differences"], report
    # The export still asserts the journal's own balances, so it stays consistent.
    assert beancount_errors((await bus.request(ExportJournal())).result["text"]) == []


async def test_the_audit_reconciles_funding_and_trades_with_the_journal(ledger, bus):
    ledger.clock.set(at("2026-11-02T10:00:00-05:00"))
    account = await open_account(bus)
    await deposit(ledger, bus, account, "100.00")
    await trade(ledger, bus, account, Side.BUY, "VTI", "0.10000", "25.00")
    url = ledger.settings.database_url
    conn = await asyncpg.connect(url, server_settings={"search_path": "ledger"})
    try:
        async with conn.transaction():
            assert (await report_handlers.run_audit(conn)).ok
        await conn.execute("DELETE FROM ledger.trades WHERE account_id = $1", account)
        await conn.execute("UPDATE ledger.funding SET amount = 99.00 WHERE account_id = $1", account)
        async with conn.transaction():
            report = await report_handlers.run_audit(conn)
    finally:
        await conn.close()
    assert not report.ok
    text = "\n".join(report.differences)
    assert "moved the cash by 100.00" in text  # the funding record says 99.00
    assert f"account {account}: cash 75.00" in text
    assert "0.10000 VTI held but trades and other entries give 0" in text
