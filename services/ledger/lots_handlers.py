"""Tax lots and regulatory fees in the fills path; dividends, cash interest and the platform
fee in the ledger's daily job; the realised-gains query.

``book_lots_and_fees`` runs inside the fill handlers' transaction (after the fill entry):
a fixed number of multi-row statements per batch whatever its size. ``register`` adds the
handlers of ``market.dividend.announced``, ``ledger.day.run`` and ``ledger.gains.get`` and the daily
schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from services.ledger import domain, fills_store, lots, lots_store, store
from services.ledger.domain import Posting, cash_book
from shared import topology
from shared.contracts import (
    CashChanged,
    DividendAnnounced,
    GainsReport,
    GainsTotals,
    GetGains,
    LedgerDayDone,
    RealisedGain,
    RunLedgerDay,
)
from shared.messaging import Rejected, Tx
from shared.service import Service
from shared.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")
# Firm books of this module (see docs/services/ledger.md, "Books").
SEC_FEES = "firm:fees:sec"
TAF_FEES = "firm:fees:taf"
PLATFORM_FEES = "firm:fees:platform"
DIVIDENDS = "firm:dividends"
INTEREST = "firm:interest"
CENTS = Decimal("0.01")


def ny_date(moment: datetime) -> date:
    return moment.astimezone(NEW_YORK).date()


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in New York."""
    return datetime.combine(day, time(0), NEW_YORK)


def rates(settings: Settings) -> lots.RegulatoryRates:
    return lots.RegulatoryRates(settings.sec_fee_per_million, settings.finra_taf_per_share, settings.finra_taf_max)


async def emit_cash_changes(tx: Tx, deltas: dict[str, Decimal], cause: str, cause_id: str) -> None:
    """Bump the accounts' versions and emit their new cash (``ledger.cash.changed``)."""
    accounts = sorted(deltas)
    versions = await store.bump_versions(tx.conn, accounts)
    cash = await store.cash_of_many(tx.conn, accounts)
    for account_id in accounts:
        tx.emit(CashChanged(account_id=account_id, cash=cash[account_id], delta=deltas[account_id], cause=cause,
                            cause_id=cause_id, version=versions[account_id]))


async def book_lots(tx: Tx, window_id: object) -> None:
    """After a fill entry (the accounts locked, the fills staged: ``fills_store.stage``):
    close lots per sell in the tax-minimising order and record the realised gains (one
    statement for the sells alone on their pair, ``lots.close_sales`` for the others), open
    a lot per buy (one statement), and flag wash sales. (The sells' regulatory fees are
    booked by the daily job of the trade date: ``charge_regulatory_fees``.)"""
    today = ny_date(tx.now)
    window = str(window_id)
    # A sell alone on its (account, security) in the batch, the usual case, is closed in SQL;
    # several sells of one pair close in turn (each sees what the one before left), in Python.
    loss_pairs = set(await fills_store.close_single_sales(tx.conn, window_id, tx.now, today))
    sells = [lots.Sale(f"{window}:{r['intent_id']}", r["account_id"], r["symbol"], r["quantity"], r["amount"],
                       r["price"]) for r in await fills_store.staged_repeat_sales(tx.conn)]
    if sells:
        pairs = sorted({(s.account_id, s.symbol) for s in sells})
        closed, changed = lots.close_sales(await lots_store.open_lots(tx.conn, pairs), sells, today)
        await lots_store.update_lots(tx.conn, changed.values())
        await lots_store.insert_gains(tx.conn, closed, tx.now, today)
        loss_pairs |= {(s.account_id, s.symbol) for s, c in closed if c.gain < 0}
    await fills_store.insert_buy_lots(tx.conn, window_id, tx.now, today)
    # A loss sale now, or a buy now (the staged buys) of a security sold at a loss in the
    # last 30 days.
    await lots_store.flag_wash_sales(tx.conn, sorted(loss_pairs), lots.WASH_SALE_DAYS)


# ---------------------------------------------------------------- the daily job


async def charge_regulatory_fees(tx: Tx, settings: Settings, day: date) -> int:
    """The regulatory fees of ``day``'s sells (SEC fee and FINRA TAF, each per trade and
    rounded up to the cent; a trade is one account's sale of one security in one window), as
    one entry ``fee``/``regulatory:<day>``. Returns how many accounts were charged.

    Booked at the day's end rather than with the fills: a withdrawal funded by sells is paid
    from the full proceeds as soon as they are booked, and the fee then leaves the cash (a
    negative balance is covered by automatic sells in the next window)."""
    reference = f"regulatory:{day.isoformat()}"
    if await lots_store.entry_exists(tx.conn, "fee", reference):
        return 0
    sales = [lots.Sale(r["window_id"], r["account_id"], r["symbol"], r["quantity"], r["proceeds"], Decimal(0))
             for r in await lots_store.sales_on(tx.conn, day)]
    fees = {a: f for a, f in lots.regulatory_fees(sales, rates(settings)).items() if f[0] + f[1] > 0}
    if not fees:
        return 0
    await store.lock_accounts(tx.conn, sorted(fees))
    postings = [Posting(cash_book(a), domain.USD, -(sec + taf)) for a, (sec, taf) in sorted(fees.items())]
    postings += [Posting(SEC_FEES, domain.USD, sum((f[0] for f in fees.values()), Decimal(0))),
                 Posting(TAF_FEES, domain.USD, sum((f[1] for f in fees.values()), Decimal(0)))]
    if await store.book_entry(tx.conn, kind="fee", reference=reference, account_id=None,
                              correlation_id=tx.correlation_id, booked_at=tx.now,
                              postings=[p for p in postings if p.amount != 0]) is None:
        return 0
    await emit_cash_changes(tx, {a: -(sec + taf) for a, (sec, taf) in fees.items()}, "fee", reference)
    return len(fees)


async def pay_dividends(tx: Tx, day: date) -> tuple[list[str], int]:
    """Pay every dividend due by ``day``: each holder at the ex-date gets shares × amount,
    rounded down to the cent; the firm's residue keeps what rounding left of the gross."""
    paid: list[str] = []
    accounts_paid = 0
    for d in await lots_store.due_dividends(tx.conn, day):
        holdings = await lots_store.holders_at(tx.conn, d["symbol"], day_start(d["ex_date"]))
        credits, gross, residue = lots.dividend_credits(holdings, d["amount_per_share"])
        reference = f"dividend:{d['symbol']}:{d['ex_date'].isoformat()}"
        entry_id = None
        if gross > 0:
            await store.lock_accounts(tx.conn, sorted(credits))
            postings = [Posting(DIVIDENDS, domain.USD, -gross)]
            postings += [Posting(cash_book(a), domain.USD, c) for a, c in sorted(credits.items())]
            if residue:
                postings.append(Posting(domain.RESIDUE, domain.USD, residue))
            booked = await store.book_entry(tx.conn, kind="dividend", reference=reference, account_id=None,
                                            correlation_id=tx.correlation_id, booked_at=tx.now, postings=postings)
            if booked is not None:
                entry_id = booked[0]
                await emit_cash_changes(tx, credits, "dividend", reference)
                accounts_paid += len(credits)
        await lots_store.mark_dividend_paid(tx.conn, d["symbol"], d["ex_date"], entry_id, tx.now)
        paid.append(reference)
    return paid, accounts_paid


async def accrue_interest(tx: Tx, settings: Settings, day: date) -> int:
    rate = settings.plus_cash_interest_rate
    cash = await lots_store.positive_day_cash_of_plan(tx.conn, day, "plus")
    accruals = {a: (c, lots.daily_interest(c, rate, day)) for a, c in cash.items()}
    return await lots_store.insert_accruals(tx.conn, day, rate, {a: v for a, v in accruals.items() if v[1] > 0})


async def close_month(tx: Tx, settings: Settings, day: date) -> tuple[int, int]:
    """On the month's last day: pay the month's accrued interest (rounded down to the cent)
    and charge the platform fee to the accounts it is not waived for. Returns how many
    accounts were paid interest and charged the fee."""
    first = day.replace(day=1)
    month = f"{day:%Y-%m}"
    interest = {a: lots.monthly_interest(v) for a, v in (await lots_store.month_accrued(tx.conn, first, day)).items()}
    interest = {a: v for a, v in interest.items() if v > 0}
    fee = {a: lots.platform_fee_due(values, settings.platform_fee, settings.platform_fee_waiver)
           for a, values in (await lots_store.month_values(tx.conn, first, day)).items()}
    fee = {a: v for a, v in fee.items() if v > 0}
    await store.lock_accounts(tx.conn, sorted(set(interest) | set(fee)))
    paid = charged = 0
    if interest:
        total = sum(interest.values(), Decimal(0))
        postings = [Posting(INTEREST, domain.USD, -total)]
        postings += [Posting(cash_book(a), domain.USD, v) for a, v in sorted(interest.items())]
        if await store.book_entry(tx.conn, kind="interest", reference=f"interest:{month}", account_id=None,
                                  correlation_id=tx.correlation_id, booked_at=tx.now, postings=postings):
            await emit_cash_changes(tx, interest, "interest", f"interest:{month}")
            paid = len(interest)
    if fee:
        total = sum(fee.values(), Decimal(0))
        postings = [Posting(cash_book(a), domain.USD, -v) for a, v in sorted(fee.items())]
        postings.append(Posting(PLATFORM_FEES, domain.USD, total))
        if await store.book_entry(tx.conn, kind="fee", reference=f"platform:{month}", account_id=None,
                                  correlation_id=tx.correlation_id, booked_at=tx.now, postings=postings):
            await emit_cash_changes(tx, {a: -v for a, v in fee.items()}, "fee", f"platform:{month}")
            charged = len(fee)
    return paid, charged


async def run_day(tx: Tx, settings: Settings, day: date) -> LedgerDayDone:
    """The daily job for ``day``; each step happens once however often the day is run."""
    await lots_store.lock_day(tx.conn)
    await lots_store.record_day_values(tx.conn, day, day_start(day + timedelta(days=1)))
    accrued = await accrue_interest(tx, settings, day)
    regulatory = await charge_regulatory_fees(tx, settings, day)
    dividends, dividend_accounts = await pay_dividends(tx, day)
    paid = charged = 0
    if lots.month_end(day):
        paid, charged = await close_month(tx, settings, day)
    await lots_store.record_day_run(tx.conn, day, tx.now)
    return LedgerDayDone(day=day, dividends_paid=dividends, dividend_accounts=dividend_accounts,
                         interest_accrued_accounts=accrued, interest_paid_accounts=paid,
                         platform_fee_accounts=charged, regulatory_fee_accounts=regulatory)


async def run_days_owed(service: Service) -> list[date]:
    """Run the daily job for every finished day (New York) since the schedule first started
    that has not run yet. Returns the days run."""
    today = ny_date(service.clock.now())
    async with service.emitting("day") as tx:
        await lots_store.lock_day(tx.conn)
        started = await lots_store.day_schedule_started(tx.conn, today)
        done = await lots_store.days_run_since(tx.conn, started)
    ran = []
    for day in lots.days_owed(started, today, done):
        async with service.emitting(f"day:{day.isoformat()}") as tx:
            result = await run_day(tx, service.settings, day)
        service.log.info("ledger day ran", extra={"day": day.isoformat(), "dividends": result.dividends_paid,
                                                  "platform_fees": result.platform_fee_accounts,
                                                  "interest_paid": result.interest_paid_accounts})
        ran.append(day)
    return ran


# ---------------------------------------------------------------- handlers


def totals(rows: Sequence[RealisedGain]) -> GainsTotals:
    zero = Decimal("0.00")
    return GainsTotals(proceeds=sum((r.proceeds for r in rows), zero), cost=sum((r.cost for r in rows), zero),
                       gain=sum((r.gain for r in rows), zero), wash_sales=sum(1 for r in rows if r.wash_sale))


def register(service: Service) -> None:
    on = service.handler
    if service.settings.ledger_day_schedule:
        service.every("ledger day", service.settings.ledger_day_poll_seconds, run_days_owed)

    @on(topology.LEDGER_MARKET, DividendAnnounced)
    async def store_dividend(tx: Tx, event: DividendAnnounced) -> None:
        row = await lots_store.insert_dividend(tx.conn, event.symbol, event.ex_date, event.pay_date,
                                               event.amount_per_share, tx.now)
        if (row["pay_date"], row["amount_per_share"]) != (event.pay_date, event.amount_per_share):
            raise Rejected(f"dividend of {event.symbol} with ex-date {event.ex_date} was announced before as "
                           f"{row['amount_per_share']} per share paid {row['pay_date']}")

    @on(topology.LEDGER_COMMANDS, RunLedgerDay)
    async def run_ledger_day(tx: Tx, cmd: RunLedgerDay) -> LedgerDayDone:
        return await run_day(tx, service.settings, cmd.day)

    @on(topology.LEDGER_COMMANDS, GetGains, idempotent=False)
    async def get_gains(tx: Tx, query: GetGains) -> GainsReport:
        if await store.get_account(tx.conn, query.account_id) is None:
            raise Rejected(f"unknown account {query.account_id}")
        sales = [RealisedGain(sale_id=r["sale_id"], symbol=r["symbol"], quantity=r["quantity"],
                              acquired=r["acquired_on"], sold=r["sold_on"], proceeds=r["proceeds"], cost=r["cost"],
                              gain=r["gain"], term=r["term"], wash_sale=r["wash_sale"], basis_known=r["basis_known"])
                 for r in await lots_store.gains_of(tx.conn, query.account_id, query.year)]
        return GainsReport(account_id=query.account_id, year=query.year, sales=sales,
                           short_term=totals([s for s in sales if s.term == "short"]),
                           long_term=totals([s for s in sales if s.term == "long"]), total=totals(sales))
