"""Margin subscribers: projections of accounts, cash, loans, positions and prices; borrows;
the set-based equity watch that issues, meets and liquidates calls; repayment of the loan
from a liquidation's own proceeds (its sells, as the pie named them); interest accrual and
the monthly charge."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from services.margin import domain, store
from shared import topology
from shared.contracts import (
    AccountFills,
    AccountOpened,
    AccrueInterest,
    BorrowMargin,
    CallsChecked,
    CashChanged,
    CashRaising,
    ChargeLoanInterest,
    CheckCalls,
    DrawLoan,
    FillsBooked,
    GetMarginStatus,
    InterestAccrued,
    IntentsRejected,
    IntentSource,
    LoanChanged,
    LoanRequested,
    MarginCallIssued,
    MarginCallLiquidated,
    MarginCallMet,
    MarginCallState,
    MarginStatus,
    PositionChanged,
    PricesChanged,
    RaiseCash,
    RepayLoan,
    SecurityRequirement,
    SetSecurityRequirement,
    Side,
)
from shared.messaging import Rejected, Tx
from shared.money import cents
from shared.service import Service

_IDS = uuid.UUID("3b0f1a52-7c55-4d9e-8f43-6a2d0e1c9b77")
# Cash changes the margin service takes from ledger.loan.changed instead (same version, with
# the loan): applying the cash alone first would show a repayment as a fall in equity.
# Fills likewise come from ledger.fills.booked, which carries the cash and the positions of
# one version together (a buy's cash applied before its shares would look like a loss).
_TAKEN_ELSEWHERE = ("loan", "repayment", "fill")


def register(service: Service) -> None:
    on = service.handler
    rules = domain.Rules.from_settings(service.settings)
    rates = (rules.maintenance_rate, rules.regulatory_minimum)  # what the stored requirements use

    # ---------------------------------------------------------------- the equity watch

    async def evaluate(tx: Tx, *, accounts: list[str] | None = None, changes: dict | None = None) -> None:
        """Run the set-based evaluation of ``accounts`` (or of the holders of a price tick's
        ``changes``) and turn its changes into events: calls issued and met, and
        liquidations for accounts under the hard floor."""
        deadline = domain.call_deadline(tx.now, rules.call_days)
        if changes is not None:
            rows = await store.tick(tx.conn, changes, house=rules.maintenance_rate,
                                    regulatory=rules.regulatory_minimum, hard_floor=rules.hard_floor,
                                    deadline=deadline, now=tx.now)
        else:
            rows = await store.evaluate(tx.conn, accounts=accounts, hard_floor=rules.hard_floor, deadline=deadline,
                                        now=tx.now)
        for r in rows:
            if r["change"] == "issued":
                tx.emit(MarginCallIssued(account_id=r["account_id"], call_id=r["call_id"], amount_due=r["amount_due"],
                                         market_value=r["market_value"], equity=r["equity"],
                                         requirement=r["requirement"], loan=r["loan"], deadline=r["deadline"],
                                         issued_at=tx.now))
            elif r["change"] == "met":
                tx.emit(MarginCallMet(account_id=r["account_id"], call_id=r["call_id"], equity=r["equity"],
                                      requirement=r["requirement"], met_at=tx.now))
        for r in rows:
            if r["change"] == "floor":
                await liquidate(tx, r["account_id"], "floor")

    async def account_figures(conn, account_id: str) -> tuple[object, domain.Figures] | None:
        account = await store.get_account(conn, account_id)
        if account is None:
            return None
        holdings = [domain.Holding(h["symbol"], h["quantity"], h["price"], h["initial"], h["maintenance"])
                    for h in await store.holdings(conn, account_id)]
        return account, domain.figures(holdings, account["cash"], account["loan"], rules)

    async def liquidate(tx: Tx, account_id: str, reason: str) -> None:
        """Sell enough (overweight slices first, planned by the pie) at the top priority in
        the next window; the proceeds repay the loan once its own sells are booked
        (``settle_liquidations``)."""
        found = await account_figures(tx.conn, account_id)
        if found is None:
            return
        figures = found[1]
        amount = domain.liquidation_amount(figures, rules)
        if amount <= 0:
            return
        call = await store.start_liquidation(tx.conn, account_id, amount, reason)
        if call is None:
            return  # no open call (already liquidating)
        shortfall = cents(figures.requirement - figures.equity)
        tx.emit(RaiseCash(account_id=account_id, request_id=call["call_id"], amount=amount,
                          reason=f"margin call liquidation ({reason})", source=IntentSource.LIQUIDATION),
                command=True)
        tx.emit(MarginCallLiquidated(account_id=account_id, call_id=call["call_id"], amount=amount,
                                     shortfall=shortfall, reason=reason, liquidated_at=tx.now))

    # ---------------------------------------------------------------- projections

    @on(topology.MARGIN_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.open_account(tx.conn, event.account_id, event.kind, event.plan)

    @on(topology.MARGIN_LEDGER, CashChanged)
    async def cash_changed(tx: Tx, event: CashChanged) -> None:
        if event.cause in _TAKEN_ELSEWHERE:
            return  # applied from ledger.loan.changed or ledger.fills.booked
        await store.lock_for_account(tx.conn)
        await store.set_cash(tx.conn, event.account_id, event.cash, event.version)
        await evaluate(tx, accounts=[event.account_id])

    @on(topology.MARGIN_LEDGER, PositionChanged)
    async def position_changed(tx: Tx, event: PositionChanged) -> None:
        await store.lock_for_account(tx.conn)
        # Not evaluated here: a fill's positions and cash are evaluated together from
        # ledger.fills.booked (this event alone may run ahead of the cash it was paid with).
        await store.set_position(tx.conn, event.account_id, event.symbol, event.quantity, event.version, *rates)

    @on(topology.MARGIN_LEDGER, LoanChanged)
    async def loan_changed(tx: Tx, event: LoanChanged) -> None:
        await store.lock_for_account(tx.conn)
        await store.apply_loan(tx.conn, event.account_id, event.loan, event.cash, event.version, event.booked_at)
        if event.cause == "loan":
            try:
                await store.loan_booked(tx.conn, uuid.UUID(event.cause_id))
            except ValueError:
                pass  # a loan booked under an id this service did not issue
        await evaluate(tx, accounts=[event.account_id])

    @on(topology.MARGIN_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await store.lock_for_sweep(tx.conn)
        changes = await store.set_prices(tx.conn, event.prices, event.as_of)
        if changes:
            await evaluate(tx, changes=changes)

    @on(topology.MARGIN_LEDGER, FillsBooked)
    async def fills_booked(tx: Tx, event: FillsBooked) -> None:
        """A booked fills batch: each account's part in turn, in the batch's order (by account
        id, so two transactions lock the accounts they share in the same order)."""
        for part in event.accounts:
            await account_fills_booked(tx, part)

    async def account_fills_booked(tx: Tx, part: AccountFills) -> None:
        """A fill's cash and positions at one version; the sells that may be a liquidation's
        are kept and matched to it (a liquidation's own sells repay the loan and close its call)."""
        await store.lock_for_account(tx.conn)
        await store.set_cash(tx.conn, part.account_id, part.cash, part.version)
        for symbol in sorted({f.symbol for f in part.fills}):
            await store.set_position(tx.conn, part.account_id, symbol,
                                     part.positions.get(symbol, Decimal("0")), part.version, *rates)
        sells = [(f.intent_id, f.amount) for f in part.fills if f.side == Side.SELL]
        if sells and await store.record_sells(tx.conn, part.account_id, part.window_id, sells):
            await settle_liquidations(tx, part.account_id, then_evaluate=False)
        await evaluate(tx, accounts=[part.account_id])

    # ---------------------------------------------------------------- a liquidation's own sells

    async def settle_liquidations(tx: Tx, account_id: str, *, then_evaluate: bool = True) -> None:
        """Match the account's kept sells to its liquidations (domain.settle_liquidations):
        count their proceeds, repay the loan from them through the ledger (``up_to``), close
        the calls whose own sells were booked; then evaluate the account (unless the caller
        does), which issues a new call if it is still short."""
        account = await store.get_account(tx.conn, account_id)
        if account is None:
            return  # never heard of: no call either
        liquidations = [domain.Liquidation(**r) for r in await store.liquidations(tx.conn, account_id)]
        sells = [domain.SellBooked(**r) for r in await store.sells_kept(tx.conn, account_id)]
        settlements, keep = domain.settle_liquidations(liquidations, sells, account["loan"])
        for s in settlements:
            await store.count_raised(tx.conn, s.call_id, s.proceeds, s.closes, tx.now)
            if s.repay > 0:
                tx.emit(RepayLoan(account_id=account_id, amount=s.repay, up_to=True,
                                  repayment_id=uuid.uuid5(_IDS, f"liquidation:{s.call_id}:{s.raised_before}")),
                        command=True)
        counted = [(x.window_id, x.intent_id) for s in settlements for x in s.sells]
        await store.forget_sells(tx.conn, account_id, counted, rest=not keep)
        if settlements and then_evaluate:
            await evaluate(tx, accounts=[account_id])

    @on(topology.MARGIN_PIE, CashRaising)
    async def cash_raising(tx: Tx, event: CashRaising) -> None:
        """The pie's answer to a liquidation's ``pie.cash.raise`` (request id = call id): the
        batch of its sells and their intents (the liquidation's own sells), or nothing to
        sell (the call closes with nothing raised)."""
        await store.lock_for_account(tx.conn)
        await store.lock_account(tx.conn, event.account_id)
        await store.record_liquidation_answer(tx.conn, event.account_id, event.request_id, event.planned,
                                              event.batch_id, legacy=event.batch_id is not None and not event.intent_ids)
        if event.batch_id is not None and event.intent_ids:
            await store.record_liquidation_intents(tx.conn, event.account_id, event.batch_id, event.intent_ids)
        await settle_liquidations(tx, event.account_id)

    @on(topology.MARGIN_WINDOW, IntentsRejected)
    async def intents_rejected(tx: Tx, event: IntentsRejected) -> None:
        """Intents the window rejected for good, kept while the account has a call
        liquidating: a liquidation whose every sell is rejected closes with nothing raised
        (and the account is called again if still short), instead of waiting for fills that
        will never come."""
        await store.lock_for_account(tx.conn)
        await store.lock_account(tx.conn, event.account_id)
        if await store.record_rejections(tx.conn, event.account_id, event.window_id, event.reasons):
            await settle_liquidations(tx, event.account_id)

    # ---------------------------------------------------------------- commands

    @on(topology.MARGIN_COMMANDS, BorrowMargin)
    async def borrow(tx: Tx, cmd: BorrowMargin) -> LoanRequested:
        await store.lock_for_account(tx.conn)
        account = await store.get_account(tx.conn, cmd.account_id, lock=True)
        if account is None or account["kind"] is None:
            raise Rejected(f"unknown account {cmd.account_id}")
        holdings = [domain.Holding(h["symbol"], h["quantity"], h["price"], h["initial"], h["maintenance"])
                    for h in await store.holdings(tx.conn, cmd.account_id)]
        if reason := domain.borrow_refusal(account["kind"], holdings, account["cash"], account["loan"],
                                           account["pending_loans"], cmd.amount, rules):
            raise Rejected(f"borrow refused: {reason}")
        loan_id = uuid.uuid5(_IDS, f"loan:{tx.message_id}")
        await store.add_loan_request(tx.conn, loan_id, cmd.account_id, cmd.amount, tx.now)
        tx.emit(DrawLoan(account_id=cmd.account_id, loan_id=loan_id, amount=cmd.amount), command=True)
        figures = domain.figures(holdings, account["cash"], account["loan"], rules)
        return LoanRequested(account_id=cmd.account_id, loan_id=loan_id, amount=cmd.amount,
                             borrowing_power=domain.borrowing_power(figures, account["pending_loans"] + cmd.amount))

    @on(topology.MARGIN_COMMANDS, GetMarginStatus, idempotent=False)
    async def status(tx: Tx, query: GetMarginStatus) -> MarginStatus:
        found = await account_figures(tx.conn, query.account_id)
        if found is None or found[0]["kind"] is None:
            raise Rejected(f"unknown account {query.account_id}")
        account, f = found
        reason = domain.eligibility_refusal(account["kind"], f, rules)
        call = await store.current_call(tx.conn, query.account_id)
        return MarginStatus(
            account_id=query.account_id, eligible=reason is None, reason=reason,
            market_value=cents(f.market_value), cash=f.cash, loan=f.loan, equity=cents(f.equity),
            requirement=cents(f.requirement),
            borrowing_power=domain.borrowing_power(f, account["pending_loans"]) if reason is None else Decimal("0.00"),
            interest_rate=domain.annual_rate(account["plan"], rules),
            interest_accrued=cents(account["interest_accrued"]),
            call=MarginCallState(**dict(call)) if call is not None else None)

    @on(topology.MARGIN_COMMANDS, SetSecurityRequirement)
    async def set_requirement(tx: Tx, cmd: SetSecurityRequirement) -> SecurityRequirement:
        await store.lock_for_sweep(tx.conn)
        await store.set_requirement(tx.conn, cmd.symbol, cmd.initial, cmd.maintenance)
        await evaluate(tx, accounts=await store.recompute(tx.conn, *rates, symbol=cmd.symbol))
        return SecurityRequirement(symbol=cmd.symbol, initial=cmd.initial, maintenance=cmd.maintenance)

    async def check_calls(tx: Tx, at: datetime) -> list[str]:
        """Liquidate the open calls past their deadline (after re-evaluating them: a call
        that recovered is met instead)."""
        due = await store.due_calls(tx.conn, at)
        if not due:
            return []
        await evaluate(tx, accounts=due)
        liquidated = []
        for account_id in await store.due_calls(tx.conn, at):
            await liquidate(tx, account_id, "deadline")
            liquidated.append(account_id)
        return liquidated

    @on(topology.MARGIN_COMMANDS, CheckCalls)
    async def check_calls_command(tx: Tx, cmd: CheckCalls) -> CallsChecked:
        await store.lock_for_sweep(tx.conn)
        return CallsChecked(liquidated=await check_calls(tx, cmd.at or tx.now))

    async def accrue(tx: Tx, day) -> InterestAccrued:
        """Accrue ``day``'s interest on every loan as it was at the day's end (New York); on
        the month's last day charge the month's interest to cash through the ledger. Once
        per day."""
        count = await store.accrue_day(tx.conn, day, domain.start_of(day + timedelta(days=1)), rules.rate_plus,
                                       rules.rate_basic, tx.now)
        if count is None:
            done = await store.day_done(tx.conn, day)
            return InterestAccrued(day=day, accrued_accounts=done["accrued_accounts"],
                                   charged_accounts=done["charged_accounts"], charged=done["charged"])
        charges, total = [], Decimal("0.00")
        if domain.month_end(day):
            period = f"{day.year:04d}-{day.month:02d}"
            charges = await store.take_charges(tx.conn, period, tx.now)
            for c in charges:
                tx.emit(ChargeLoanInterest(account_id=c["account_id"], charge_id=c["charge_id"], amount=c["amount"],
                                           period=period), command=True)
                total += c["amount"]
            await store.record_charges(tx.conn, day, len(charges), total)
        return InterestAccrued(day=day, accrued_accounts=count, charged_accounts=len(charges), charged=total)

    @on(topology.MARGIN_COMMANDS, AccrueInterest)
    async def accrue_command(tx: Tx, cmd: AccrueInterest) -> InterestAccrued:
        await store.lock_for_sweep(tx.conn)
        return await accrue(tx, cmd.day)

    # ---------------------------------------------------------------- schedule

    async def scheduled_once(svc: Service) -> None:
        """Check deadlines now, and accrue every finished day not accrued yet (starting the
        day before the first run)."""
        now = svc.clock.now()
        async with svc.emitting("margin-schedule") as tx:
            await store.lock_for_sweep(tx.conn)
            await check_calls(tx, now)
        today = domain.local_date(now)
        async with svc.pool.acquire() as conn:
            last = await store.last_accrued_day(conn)
        day = (last + timedelta(days=1)) if last else today - timedelta(days=1)
        while day < today:
            async with svc.emitting("margin-interest") as tx:
                await store.lock_for_sweep(tx.conn)
                await accrue(tx, day)
            day += timedelta(days=1)

    @service.on_ready
    async def recompute_at_start(svc: Service) -> None:
        """Sum every account's market value and requirement again (the rates may have
        changed since the last run), then evaluate every margin account."""
        async with svc.emitting("margin-start") as tx:
            await store.lock_for_sweep(tx.conn)
            await store.recompute(tx.conn, *rates)
            await evaluate(tx, accounts=await store.margin_accounts(tx.conn))

    if service.settings.margin_schedule:
        service.every("margin schedule", service.settings.margin_schedule_poll_seconds, scheduled_once)
