"""Tax lots, realised gains, wash sales, regulatory fees, dividends, cash interest and the
platform fee, through the ledger service on the real RabbitMQ and PostgreSQL.

The ledger's clock is set per step (holding periods and wash-sale windows count in days);
the daily job runs by command only (its schedule is off here)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from services.ledger.app import create_service
from shared.contracts import (
    DepositReceived,
    DividendAnnounced,
    Execution,
    Fill,
    FillsAllocated,
    GetAccount,
    GetGains,
    OpenAccount,
    PricesChanged,
    RunLedgerDay,
)
from tests.integration.test_order_margin import handled, new_symbol, publish
from tests.support import fetch, fetchval

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(topology_declared):
    settings = topology_declared.model_copy(update={"ledger_day_schedule": False})
    async with create_service(settings).running() as svc:
        yield svc


def at(day: str, hour: int = 15) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


async def open_funded(bus, settings, amount: str, plan: str = "basic") -> str:
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert (await bus.request(OpenAccount(account_id=account, plan=plan))).ok
    if D(amount):
        deposit = DepositReceived(deposit_id=uuid.uuid4(), account_id=account, amount=D(amount), currency="USD",
                                  received_at=datetime.now(UTC))
        await handled(settings, "ledger", await publish(bus, deposit, str(deposit.deposit_id)))
    return account


async def trade(bus, settings, ledger, when: datetime, *fills: tuple[str, str, str, str, str]) -> None:
    """Book one window at ``when`` (the ledger's clock): see ``book_fills``."""
    ledger.clock.set(when)
    await book_fills(bus, settings, *fills)


async def book_fills(bus, settings, *fills: tuple[str, str, str, str, str]) -> None:
    """Book one window's fills of (account, symbol, side, quantity, price) in the ledger; the
    street executes each fill as is (no residue)."""
    allocated = [Fill(intent_id=uuid.uuid4(), account_id=a, symbol=s, side=side, quantity=D(q), price=D(p),
                      amount=(D(q) * D(p)).quantize(D("0.01"))) for a, s, side, q, p in fills]
    executions = [Execution(symbol=f.symbol, side=f.side, quantity=f.quantity, price=f.price, amount=f.amount)
                  for f in allocated]
    event = FillsAllocated(window_id=uuid.uuid4(), executions=executions, fills=allocated, residues=[])
    await handled(settings, "ledger", await publish(bus, event))


async def cash(bus, account: str) -> D:
    reply = await bus.request(GetAccount(account_id=account))
    assert reply.ok, reply
    return D(reply.result["cash"])


async def run_day(bus, ledger, day: str) -> dict:
    ledger.clock.set(at(day, 12))
    reply = await bus.request(RunLedgerDay(day=date.fromisoformat(day)))
    assert reply.ok, reply
    return reply.result


async def books_balance(settings) -> bool:
    rows = await fetch(settings.database_url, "SELECT asset, sum(amount) AS t FROM ledger.postings GROUP BY asset")
    return all(r["t"] == 0 for r in rows)


async def test_sales_close_losses_first_and_record_short_and_long_term_gains_with_a_wash_sale(ledger, bus, settings):
    account = await open_funded(bus, settings, "10000.00")
    sym = new_symbol()
    await trade(bus, settings, ledger, at("2025-01-10"), (account, sym, "buy", "10", "100"))  # long-term by June 2026
    await trade(bus, settings, ledger, at("2026-05-01"), (account, sym, "buy", "10", "120"))  # short-term
    # 12 shares at $110: the short-term loss lot ($120) goes first, then 2 of the long-term gain lot ($100).
    await trade(bus, settings, ledger, at("2026-06-15"), (account, sym, "sell", "12", "110"))

    report = (await bus.request(GetGains(account_id=account, year=2026))).result
    rows = [(s["term"], s["quantity"], s["acquired"], s["proceeds"], s["cost"], s["gain"], s["wash_sale"])
            for s in report["sales"]]
    assert rows == [("short", "10.00000", "2026-05-01", "1100.00", "1200.00", "-100.00", False),
                    ("long", "2.00000", "2025-01-10", "220.00", "200.00", "20.00", False)]
    assert report["short_term"] == {"proceeds": "1100.00", "cost": "1200.00", "gain": "-100.00", "wash_sales": 0}
    assert report["long_term"] == {"proceeds": "220.00", "cost": "200.00", "gain": "20.00", "wash_sales": 0}
    left = await fetch(settings.database_url, "SELECT acquired_on, remaining, remaining_cost FROM ledger.lots "
                                              "WHERE account_id = $1 ORDER BY lot_id", account)
    assert [(str(r["acquired_on"]), r["remaining"], r["remaining_cost"]) for r in left] == [
        ("2025-01-10", D("8.00000"), D("800.00")), ("2026-05-01", D("0.00000"), D("0.00"))]

    # A buy 16 days after the loss sale makes it a wash sale; the gain is not one.
    await trade(bus, settings, ledger, at("2026-07-01"), (account, sym, "buy", "1", "105"))
    report = (await bus.request(GetGains(account_id=account, year=2026))).result
    assert [s["wash_sale"] for s in report["sales"]] == [True, False]
    assert report["total"]["wash_sales"] == 1
    assert (await bus.request(GetGains(account_id=account, year=2025))).result["sales"] == []

    # The day's job charges the sale's regulatory fees, once: SEC $0.04 (1320 x 27.80 / 1M =
    # 0.0367, up) and FINRA TAF $0.01 (12 x 0.000166, up).
    assert await cash(bus, account) == D("10000.00") - 1000 - 1200 + 1320 - 105
    for _ in range(2):
        await run_day(bus, ledger, "2026-06-15")
    fees = await fetch(settings.database_url,
                       """SELECT p.book, p.amount FROM ledger.postings p JOIN ledger.entries e USING (entry_id)
                          WHERE e.kind = 'fee' AND e.reference = 'regulatory:2026-06-15' ORDER BY p.book""")
    assert [(r["book"], r["amount"]) for r in fees] == [
        (f"customer:{account}:cash", D("-0.05000")), ("firm:fees:sec", D("0.04000")), ("firm:fees:taf", D("0.01000"))]
    assert await cash(bus, account) == D("10000.00") - 1000 - 1200 + 1320 - 105 - D("0.05")
    assert await books_balance(settings)


async def test_a_buy_within_thirty_days_before_a_loss_sale_makes_it_a_wash_sale(ledger, bus, settings):
    account = await open_funded(bus, settings, "1000.00")
    sym = new_symbol()
    await trade(bus, settings, ledger, at("2026-01-05"), (account, sym, "buy", "2", "100"))
    await trade(bus, settings, ledger, at("2026-03-01"), (account, sym, "buy", "1", "90"))
    # Closes the $100 lot at a loss; the $90 buy is 31 days before: not a wash sale.
    await trade(bus, settings, ledger, at("2026-04-01"), (account, sym, "sell", "2", "95"))
    await trade(bus, settings, ledger, at("2026-05-10"), (account, sym, "buy", "1", "100"))
    await trade(bus, settings, ledger, at("2026-05-20"), (account, sym, "buy", "1", "100"))
    # Closes the May 10 lot (equal losses: oldest first); the May 20 buy, 12 days before, is
    # a replacement: a wash sale.
    await trade(bus, settings, ledger, at("2026-06-01"), (account, sym, "sell", "1", "95"))
    # Closes the May 20 lot; no other buy within 30 days (the lot sold is not its own replacement).
    await trade(bus, settings, ledger, at("2026-07-15"), (account, sym, "sell", "1", "95"))
    report = (await bus.request(GetGains(account_id=account, year=2026))).result
    assert [(s["acquired"], s["sold"], s["gain"], s["wash_sale"]) for s in report["sales"]] == [
        ("2026-01-05", "2026-04-01", "-10.00", False),
        ("2026-05-10", "2026-06-01", "-5.00", True),
        ("2026-05-20", "2026-07-15", "-5.00", False)]


async def test_two_sells_of_one_security_in_one_window_close_lots_in_turn(ledger, bus, settings):
    account = await open_funded(bus, settings, "10000.00")
    sym = new_symbol()
    await trade(bus, settings, ledger, at("2025-01-10"), (account, sym, "buy", "10", "100"))  # long-term gain lot
    await trade(bus, settings, ledger, at("2026-05-01"), (account, sym, "buy", "10", "120"))  # short-term loss lot
    # The first sell (5) takes half of the loss lot; the second (8) sees what the first left:
    # the other 5 of it, then 3 of the gain lot, its $880 shared pro rata (the last part takes
    # the remainder).
    await trade(bus, settings, ledger, at("2026-06-15"), (account, sym, "sell", "5", "110"),
                (account, sym, "sell", "8", "110"))
    report = (await bus.request(GetGains(account_id=account, year=2026))).result
    assert sorted((s["term"], s["quantity"], s["proceeds"], s["cost"], s["gain"]) for s in report["sales"]) == [
        ("long", "3.00000", "330.00", "300.00", "30.00"),
        ("short", "5.00000", "550.00", "600.00", "-50.00"),
        ("short", "5.00000", "550.00", "600.00", "-50.00")]
    left = await fetch(settings.database_url, "SELECT remaining, remaining_cost FROM ledger.lots "
                                              "WHERE account_id = $1 ORDER BY lot_id", account)
    assert [(r["remaining"], r["remaining_cost"]) for r in left] == [(D("7.00000"), D("700.00")),
                                                                     (D("0.00000"), D("0.00"))]
    assert await books_balance(settings)


async def test_regulatory_fees_are_charged_per_trade_in_each_window_of_a_day(ledger, bus, settings):
    account = await open_funded(bus, settings, "60000.00")
    sym = new_symbol()
    await trade(bus, settings, ledger, at("2031-03-10"), (account, sym, "buy", "60000", "1"))
    # Two windows of one day each sell 30,000 shares for $30,000: two trades, each charged
    # SEC $0.84 (30,000 x 27.80 / 1M = 0.834, up) and TAF $4.98 (30,000 x 0.000166, under
    # the $8.30 cap); as one trade they would pay $1.67 + $8.30.
    await trade(bus, settings, ledger, at("2031-03-12", 14), (account, sym, "sell", "30000", "1"))
    await trade(bus, settings, ledger, at("2031-03-12", 19), (account, sym, "sell", "30000", "1"))
    assert await cash(bus, account) == D("60000.00")
    await run_day(bus, ledger, "2031-03-12")
    fees = await fetch(settings.database_url,
                       """SELECT p.book, p.amount FROM ledger.postings p JOIN ledger.entries e USING (entry_id)
                          WHERE e.kind = 'fee' AND e.reference = 'regulatory:2031-03-12' ORDER BY p.book""")
    assert [(r["book"], r["amount"]) for r in fees] == [
        (f"customer:{account}:cash", D("-11.64000")), ("firm:fees:sec", D("1.68000")),
        ("firm:fees:taf", D("9.96000"))]
    assert await cash(bus, account) == D("60000.00") - D("11.64")
    assert await books_balance(settings)


async def test_a_dividend_is_paid_on_the_pay_date_to_holders_at_the_ex_date(ledger, bus, settings):
    sym = new_symbol()
    h1, h2, late = [await open_funded(bus, settings, "100.00") for _ in range(3)]
    await trade(bus, settings, ledger, at("2030-03-05"), (h1, sym, "buy", "3", "10"), (h2, sym, "buy", "1.5", "10"))
    await trade(bus, settings, ledger, at("2030-03-20", 14), (late, sym, "buy", "2", "10"))  # on the ex-date
    announced = DividendAnnounced(symbol=sym, amount_per_share=D("0.333333"), ex_date=date(2030, 3, 20),
                                  pay_date=date(2030, 3, 25))
    for _ in range(2):  # announced twice: stored once
        await handled(settings, "ledger", await publish(bus, announced))
    await run_day(bus, ledger, "2030-03-24")
    assert [await cash(bus, a) for a in (h1, h2, late)] == [D("70.00"), D("85.00"), D("80.00")]
    result = await run_day(bus, ledger, "2030-03-25")
    assert result["dividends_paid"] == [f"dividend:{sym}:2030-03-20"]
    # 3 x 0.333333 = 0.999999 -> 0.99; 1.5 x 0.333333 = 0.4999995 -> 0.49; gross 1.4999985 -> 1.49
    assert [await cash(bus, a) for a in (h1, h2, late)] == [D("70.99"), D("85.49"), D("80.00")]
    legs = await fetch(settings.database_url,
                       """SELECT p.book, p.amount FROM ledger.postings p JOIN ledger.entries e USING (entry_id)
                          WHERE e.kind = 'dividend' AND e.reference = $1 AND p.book LIKE 'firm:%' ORDER BY p.book""",
                       f"dividend:{sym}:2030-03-20")
    assert [(r["book"], r["amount"]) for r in legs] == [("firm:dividends", D("-1.49000")),
                                                        ("firm:residue", D("0.01000"))]
    await run_day(bus, ledger, "2030-03-26")  # paid once
    assert await cash(bus, h1) == D("70.99")
    assert await books_balance(settings)


async def test_platform_fee_waived_at_ten_thousand_on_one_day_and_interest_paid_to_plus(ledger, bus, settings):
    sym = new_symbol()  # never priced: holdings of it count at zero in the day's value
    at_threshold = await open_funded(bus, settings, "10000.00")
    just_under = await open_funded(bus, settings, "9999.99")
    empty = await open_funded(bus, settings, "0")
    plus = await open_funded(bus, settings, "1000.00", plan="plus")
    await run_day(bus, ledger, "2030-01-15")
    await trade(bus, settings, ledger, at("2030-01-20"), (at_threshold, sym, "buy", "95", "100"))
    await run_day(bus, ledger, "2030-01-30")
    assert await cash(bus, plus) == D("1000.00")  # interest is paid at the month's end
    for _ in range(2):  # the month closes once however often its last day runs
        await run_day(bus, ledger, "2030-01-31")
    assert await cash(bus, at_threshold) == D("500.00")  # reached $10,000 on the 15th: waived
    assert await cash(bus, just_under) == D("9996.99")
    assert await cash(bus, empty) == D("0.00")
    # 3 days of 1000 x 4% / 365 = 0.328767... -> $0.32; and the fee (under $10,000 all month)
    assert await cash(bus, plus) == D("1000.00") + D("0.32") - D("3.00")
    accrued = await fetchval(settings.database_url, "SELECT sum(amount) FROM ledger.interest_accruals "
                                                    "WHERE account_id = $1", plus)
    assert accrued == D("0.3287671233")
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.entries WHERE reference = $1",
                          "platform:2030-01") == 1
    assert await books_balance(settings)


async def test_the_days_values_and_interest_are_the_accounts_at_the_days_end_not_when_the_job_runs(
        ledger, bus, settings):
    """The job for 6 May 2031 runs after midnight in New York (04:00 UTC in May): a deposit,
    a buy and a price published since then are the 7th's, not the 6th's."""
    async def price(symbol: str, value: str, as_of: datetime) -> None:
        await handled(settings, "ledger", await publish(bus, PricesChanged(prices={symbol: D(value)}, as_of=as_of)))

    sym = new_symbol()
    ledger.clock.set(datetime(2031, 5, 6, 14, tzinfo=UTC))
    plus = await open_funded(bus, settings, "1000.00", plan="plus")
    holder = await open_funded(bus, settings, "9000.00")
    await trade(bus, settings, ledger, datetime(2031, 5, 6, 15, tzinfo=UTC), (holder, sym, "buy", "10", "100"))
    await price(sym, "100", datetime(2031, 5, 6, 20, tzinfo=UTC))  # the close, 16:00 New York
    # after the day's end: more cash, more shares, a higher price
    ledger.clock.set(datetime(2031, 5, 7, 4, 0, tzinfo=UTC))
    deposit = DepositReceived(deposit_id=uuid.uuid4(), account_id=plus, amount=D("50000.00"), currency="USD",
                              received_at=datetime(2031, 5, 7, 4, 0, tzinfo=UTC))
    await handled(settings, "ledger", await publish(bus, deposit, str(deposit.deposit_id)))
    await trade(bus, settings, ledger, datetime(2031, 5, 7, 4, 1, tzinfo=UTC), (holder, sym, "buy", "5", "100"))
    await price(sym, "300", datetime(2031, 5, 7, 4, 2, tzinfo=UTC))
    ledger.clock.set(datetime(2031, 5, 7, 4, 5, tzinfo=UTC))
    assert (await bus.request(RunLedgerDay(day=date(2031, 5, 6)))).ok

    rows = await fetch(settings.database_url, "SELECT account_id, cash, value FROM ledger.day_values "
                                              "WHERE day = '2031-05-06' AND account_id = ANY($1)", [plus, holder])
    assert {r["account_id"]: (r["cash"], r["value"]) for r in rows} == {
        plus: (D("1000.00"), D("1000.00")), holder: (D("8000.00"), D("9000.00"))}
    accrual = await fetch(settings.database_url, "SELECT cash, amount FROM ledger.interest_accruals "
                                                 "WHERE account_id = $1", plus)
    assert [(r["cash"], r["amount"]) for r in accrual] == [(D("1000.00"), D("0.1095890411"))]  # 1000 x 4% / 365
    # the next day's values hold all of it
    assert (await bus.request(RunLedgerDay(day=date(2031, 5, 7)))).ok
    rows = await fetch(settings.database_url, "SELECT account_id, cash, value FROM ledger.day_values "
                                              "WHERE day = '2031-05-07' AND account_id = ANY($1)", [plus, holder])
    assert {r["account_id"]: (r["cash"], r["value"]) for r in rows} == {
        plus: (D("51000.00"), D("51000.00")), holder: (D("7500.00"), D("12000.00"))}
