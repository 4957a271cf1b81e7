"""Dividends through every service, as processes: the market announces, the ledger pays the
holders at the ex-date on the pay date, the pie reinvests cash of $25 or more; and the
realised gains of a later sale through ``m1 gains``."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from shared.contracts import AnnounceDividend, GetAccount, RunLedgerDay, SetPrices
from tests.e2e.test_deposit_flow import assert_books_balance
from tests.e2e.test_pie_flow import close_window, invested_account, m1, pending, portfolio_if, settled
from tests.support import eventually, fetchval
from tests.support_ledger import assert_ledger_checks_out

pytestmark = pytest.mark.e2e

D = Decimal


def next_day_not_month_end() -> datetime:
    """Tomorrow in New York, or the day after when tomorrow ends a month (a month's last day
    also charges the platform fee, which this scenario leaves out)."""
    day = datetime.now(UTC).astimezone(ZoneInfo("America/New_York")).date() + timedelta(days=1)
    return day + timedelta(days=1) if (day + timedelta(days=1)).month != day.month else day


async def test_a_dividend_is_paid_to_holders_and_reinvested_from_25_dollars(system, client):
    settings = system.settings
    prices = {"VTI": "250.00", "BND": "80.00"}
    big = await invested_account(client, settings, prices)  # 2.4 VTI, 5 BND
    small = await invested_account(client, settings, prices, amount="500.00")  # 1.2 VTI, 2.5 BND
    day = next_day_not_month_end()
    announced = await client.call(AnnounceDividend(symbol="VTI", amount_per_share="20.00", ex_date=day,
                                                   pay_date=day))
    assert announced["symbol"] == "VTI"
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) FROM ledger.dividends "
                                                             "WHERE symbol = 'VTI' AND ex_date = $1", day))
    result = await client.call(RunLedgerDay(day=day))
    assert result["dividends_paid"] == [f"dividend:VTI:{day.isoformat()}"]

    # $48.00 (2.4 x $20) reaches the $25 threshold: invested in the next window.
    buys = await eventually(lambda: pending(settings, big))
    assert sum(amount for _, side, amount in buys if side == "buy") == D("48.00")
    # $24.00 (1.2 x $20) stays in cash.
    assert D((await client.call(GetAccount(account_id=small)))["cash"]) == D("24.00")
    assert await pending(settings, small) == []
    await close_window(client, settings, big)
    view = await eventually(lambda: portfolio_if(client, big, lambda v: D(v["invested"]) == D("1048.00")
                                                 and D(v["pending_buys"]) == 0))
    assert D(view["cash"]) == D("0.00")
    assert D((await client.call(GetAccount(account_id=small)))["cash"]) == D("24.00")

    # A later sale at a higher price: its realised gain through the CLI.
    await client.call(SetPrices(prices={"VTI": "300.00", "BND": "80.00"}))
    await eventually(lambda: portfolio_if(client, big, lambda v: D(v["invested"]) > D("1048.00")))
    withdrawal = await client.withdraw(big, D("100.00"))
    assert ("VTI", "sell", D("100.00")) in await eventually(lambda: pending(settings, big))
    await close_window(client, settings, big)
    await eventually(lambda: fetchval(settings.database_url, "SELECT status = 'paid' FROM ledger.pending_withdrawals "
                                                             "WHERE withdrawal_id = $1", withdrawal.withdrawal_id))
    year = str(datetime.now(UTC).astimezone(ZoneInfo("America/New_York")).year)
    rows = list(csv.DictReader(io.StringIO(m1(settings, "gains", big, "--year", year, "--csv"))))
    assert rows and {(r["symbol"], r["term"], r["wash_sale"]) for r in rows} == {("VTI", "short", "False")}
    assert sum(D(r["proceeds"]) for r in rows) == D("100.00")
    # every VTI lot cost $250 a share: 100 / 300 shares of them cost about $83.33
    assert all(D(r["gain"]) == D(r["proceeds"]) - D(r["cost"]) > 0 for r in rows)
    report = json.loads(m1(settings, "gains", big, "--year", year, "--json"))
    assert report["short_term"]["proceeds"] == "100.00" and report["long_term"]["gain"] == "0.00"
    assert D(report["total"]["gain"]) == sum(D(r["gain"]) for r in rows)
    table = m1(settings, "gains", big, "--year", year)
    assert "short-term" in table and report["total"]["gain"] in table
    await eventually(lambda: settled(settings, big))

    # The day's job charges the sale's regulatory fees (SEC and FINRA TAF, a cent each up);
    # the pie covers the negative cash with a sell in the next window.
    today = datetime.now(UTC).astimezone(ZoneInfo("America/New_York")).date()
    await client.call(RunLedgerDay(day=today))
    fee = await fetchval(settings.database_url, """
        SELECT -sum(p.amount) FROM ledger.postings p JOIN ledger.entries e USING (entry_id)
        WHERE e.kind = 'fee' AND e.reference = $1 AND p.book = $2""", f"regulatory:{today}", f"customer:{big}:cash")
    assert fee == D("0.02")
    sells = await eventually(lambda: pending(settings, big))
    assert sells and all(side == "sell" for _, side, _ in sells)
    await close_window(client, settings, big)
    await eventually(lambda: settled(settings, big))
    assert D((await client.call(GetAccount(account_id=big)))["cash"]) >= 0
    await assert_books_balance(settings.database_url)
    await assert_ledger_checks_out(client)  # the audit is clean and the export passes bean-check
