"""Ledger subscribers for settlement, statements, the export and the audit (registered by
handlers.register), and the settlement sweep that pays held withdrawals once their money
has settled."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from services.ledger import domain, reports, reports_store, settlement, store
from shared import topology
from shared.contracts import (
    AuditLedger,
    AuditReport,
    ExportJournal,
    GetStatement,
    JournalExport,
    PricesChanged,
    Statement,
)
from shared.messaging import Rejected, Tx
from shared.service import Service
from shared.settings import Settings


async def cash_state(conn: asyncpg.Connection, account_id: str, now: datetime, settings: Settings, *,
                     held_withdrawals: Decimal = Decimal("0.00")) -> settlement.CashState:
    """The account's cash at ``now`` split into unsettled sale proceeds and deposits on hold."""
    today = settlement.local_date(now)
    cash = await store.cash_of(conn, account_id)
    unsettled = await reports_store.unsettled_sales(conn, account_id, today)
    since = now - settlement.days_horizon(settings.ledger_deposit_hold_days)
    deposits = [(amount, settlement.clears_on(at, settings.ledger_deposit_hold_days))
                for amount, at in await reports_store.recent_deposits(conn, account_id, since)]
    return settlement.CashState(cash=cash, unsettled=unsettled, on_hold=settlement.on_hold(deposits, today),
                                held_withdrawals=held_withdrawals,
                                committed=await store.cash_held_for_windows(conn, account_id))


def register(service: Service, pay_out_held: callable) -> None:
    """``pay_out_held(tx, account_id)`` pays an account's held withdrawals that can be paid."""
    on = service.handler
    settings = service.settings

    @on(topology.LEDGER_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await reports_store.record_prices(tx.conn, dict(event.prices), event.as_of)

    @on(topology.LEDGER_COMMANDS, GetStatement, idempotent=False)
    async def get_statement(tx: Tx, query: GetStatement) -> Statement:
        account = await store.get_account(tx.conn, query.account_id)
        if account is None:
            raise Rejected(f"unknown account {query.account_id}")
        start, end = reports.month_bounds(query.month, settlement.NEW_YORK)
        if start > tx.now:
            raise Rejected(f"month {query.month} has not started")
        at = min(end, tx.now + timedelta(microseconds=1))  # up to now, including what was booked at now
        open_cash, open_positions = await reports_store.balances_at(tx.conn, query.account_id, start)
        close_cash, close_positions = await reports_store.balances_at(tx.conn, query.account_id, at)
        entries = await reports_store.account_entries(tx.conn, query.account_id, start, at)
        costs = reports.average_cost(await reports_store.trades_before(tx.conn, query.account_id, at))
        prices = await reports_store.prices_at(tx.conn, list(close_positions), at)
        holdings = reports.holdings_view(close_positions, costs, prices)
        today = settlement.local_date(at)
        unsettled = await reports_store.unsettled_sales(tx.conn, query.account_id, today, before=at)
        since = at - settlement.days_horizon(settings.ledger_deposit_hold_days)
        deposits = [(amount, settlement.clears_on(when, settings.ledger_deposit_hold_days))
                    for amount, when in await reports_store.recent_deposits(tx.conn, query.account_id, since, at)]
        # What is spoken for now (cash held for trade windows, withdrawals waiting) is known for
        # the current month only: the ledger keeps no history of it.
        waiting = committed = Decimal("0.00")
        if end > tx.now:
            waiting += sum(w["amount"] for w in await store.open_withdrawals(tx.conn, query.account_id, lock=False))
            committed = await store.cash_held_for_windows(tx.conn, query.account_id)
        state = settlement.CashState(cash=close_cash.quantize(reports.CASH_PLACES), unsettled=unsettled,
                                     on_hold=settlement.on_hold(deposits, today), held_withdrawals=waiting,
                                     committed=committed)
        market_value = sum((Decimal(h["market_value"]) for h in holdings if h["market_value"]), Decimal("0.00"))
        cents = reports.CASH_PLACES
        return Statement(
            account_id=query.account_id, month=query.month, period_start=start, period_end=end,
            opening=reports.balances_view(open_cash, open_positions),
            closing=reports.balances_view(close_cash, close_positions) | {"as_of": at.isoformat()},
            movements=reports.movements(entries, domain.cash_book(query.account_id),
                                        domain.securities_book(query.account_id)),
            holdings=holdings,
            cash={"cash": format(state.cash, "f"), "settled": format(state.settled.quantize(cents), "f"),
                  "unsettled": format(state.unsettled.quantize(cents), "f"),
                  "on_hold": format(state.on_hold.quantize(cents), "f"),
                  "held_for_trades": format(state.committed.quantize(cents), "f"),
                  "waiting_withdrawals": format(state.held_withdrawals.quantize(cents), "f"),
                  "withdrawable": format(state.withdrawable.quantize(cents), "f"),
                  "market_value": format(market_value, "f"),
                  "total": format(state.cash + market_value, "f")},
        )

    @on(topology.LEDGER_COMMANDS, ExportJournal, idempotent=False)
    async def export_journal(tx: Tx, query: ExportJournal) -> JournalExport:
        entries = await reports_store.journal(tx.conn)  # one snapshot, as every query
        return JournalExport(format=query.format, entries=len(entries), text=reports.beancount(entries))

    @on(topology.LEDGER_COMMANDS, AuditLedger, idempotent=False)
    async def audit(tx: Tx, query: AuditLedger) -> AuditReport:
        return await run_audit(tx.conn)

    async def sweep() -> None:
        """Pay the held withdrawals whose money has settled or cleared since."""
        async with service.pool.acquire() as conn:
            accounts = await reports_store.accounts_with_held_withdrawals(conn)
        for account_id in accounts:
            async with service.emitting("settlement") as tx:
                await pay_out_held(tx, account_id)

    service.every("settlement sweep", settings.ledger_settlement_poll_seconds, lambda svc: sweep(), at_start=False)
    service.settlement_sweep = sweep  # tests run it on demand


async def run_audit(conn: asyncpg.Connection) -> AuditReport:
    """Every check of ``m1 ledger audit`` on one consistent snapshot of the books."""
    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    differences: list[str] = []
    kinds, postings, accounts = await reports_store.counts(conn)
    differences += reports.unknown_kinds(kinds)
    differences += [f"entry {r['entry_id']} does not balance: {r['asset']} off by {r['off']}"
                    for r in await reports_store.unbalanced_entries(conn)]
    differences += [f"entry {e} has no postings" for e in await reports_store.entries_without_postings(conn)]
    differences += await reports_store.dangling_references(conn)
    recomputed = await reports_store.recomputed_balances(conn)
    differences += reports.balance_differences(recomputed, await reports_store.stored_balances(conn))
    totals: dict[str, Decimal] = {}
    for (_, asset), amount in recomputed.items():
        totals[asset] = totals.get(asset, Decimal(0)) + amount
    differences += [f"the books do not balance in {asset}: off by {t}" for asset, t in sorted(totals.items()) if t]
    differences += [f"window clearing book {r['book']} is off by {r['amount']} {r['asset']}"
                    for r in await reports_store.open_clearing_books(conn)]
    differences += await reports_store.funding_mismatches(conn)
    other_cash, other_shares = await reports_store.other_movements(conn)
    differences += reports.reconcile_accounts(
        recomputed, await reports_store.funding_totals(conn), await reports_store.trade_totals(conn),
        other_cash, other_shares, accounts)
    return AuditReport(ok=not differences, entries=sum(kinds.values()), postings=postings, accounts=len(accounts),
                       kinds=kinds, differences=differences)
