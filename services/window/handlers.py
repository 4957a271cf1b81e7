"""Window subscribers: parse the contract, one transaction, domain rules and set-based SQL,
emit what follows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict

from services.window import domain, store
from shared import topology
from shared.contracts import (
    AbandonWindow,
    AccountId,
    AccountOpened,
    CancelIntents,
    Cash,
    CashChanged,
    CloseWindow,
    ExecuteOrders,
    FillsBatch,
    FillsBooked,
    GetWindow,
    HoldWindowCash,
    IntentsCancelled,
    IntentsCarriedOver,
    IntentsRejected,
    IntentsSubmitted,
    ListWindows,
    LoanChanged,
    Message,
    OrderIntentsSubmitted,
    OrdersExecuted,
    PositionChanged,
    PricesChanged,
    Quantity,
    ReleaseWindowCash,
    SetTradeWindow,
    Symbol,
    WindowCashHeld,
    WindowClosing,
    WindowList,
    WindowState,
    WindowView,
)
from shared.messaging import Rejected, Tx
from shared.service import Service

class _Balances(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    account_id: AccountId
    cash: Cash
    positions: dict[Symbol, Quantity]
    version: int


class BookedBalances(Message):
    """The window's reading of ``ledger.fills.booked``: per account only the cash, positions
    and version it keeps (its fills are the window's own rows), so that a batch's fills are
    not parsed into models again. The handler gives the body itself to PostgreSQL."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    TYPE: ClassVar[str] = FillsBooked.TYPE
    VERSION: ClassVar[int] = FillsBooked.VERSION
    window_id: uuid.UUID
    batch: int
    accounts: list[_Balances]


# Window ids derive from the closing command's message id: the inbox handles each id once.
_WINDOW_NAMESPACE = uuid.UUID("3b0f4f0e-6f43-4c55-9d0e-5f2d7c1a8e21")


async def close(tx: Tx, window_id: uuid.UUID, started_at: datetime | None = None,
                session: str | None = None, other_started_at: datetime | None = None) -> WindowClosing:
    """Close a window as one run: freeze what was pending when it started (of the accounts
    trading in ``session``, and when a missed window of the other session is taken too, what
    those trading only in that one had pending when it started; all when None), fund, net,
    and ask the ledger to hold the cash the buys take (the orders go to the venue on its
    answer: ``cash_held``), or finish at once when nothing is left to trade."""
    await store.lock_closing(tx.conn)
    await store.bulk_plans(tx.conn)
    intents = await store.freeze_and_fund(tx.conn, window_id, started_at or tx.now, session,
                                          domain.BOTH_WINDOWS_EQUITY, domain.UNDER_MINIMUM,
                                          other_started_at=other_started_at)
    if not intents:
        return WindowClosing(window_id=None, intents=0, accounts=0, orders=[])
    await store.insert_window(tx.conn, window_id, tx.now, session)
    await store.reserve(tx.conn, window_id)
    for row in await store.rejected_of(tx.conn, window_id):
        tx.emit(IntentsRejected(account_id=row["account_id"], window_id=window_id, reasons=json.loads(row["reasons"])))
    orders = await store.insert_net_orders(tx.conn, window_id)
    if orders:
        await hold_cash(tx, window_id)
    else:
        await store.mark_allocated(tx.conn, window_id, None, tx.now, 0)
    return WindowClosing(window_id=window_id, intents=intents, accounts=await store.accounts_in(tx.conn, window_id),
                         orders=orders)


async def hold_cash(tx: Tx, window_id: uuid.UUID) -> None:
    """Ask the ledger to hold the cash the window's buys take from each account
    (``ledger.window.hold``): until it has booked the fills, a withdrawal cannot spend it."""
    await store.set_status(tx.conn, window_id, "holding")
    envelope = HoldWindowCash(window_id=window_id, holds=[]).model_dump_json()
    head, _, tail = envelope.partition('"holds":[]')  # the SQL-built holds go in there
    tx.emit_json(HoldWindowCash, f'{head}"holds":{await store.cash_holds_json(tx.conn, window_id)}{tail}'.encode(),
                 command=True)


async def trade(tx: Tx, window_id: uuid.UUID, short: dict[str, Decimal]) -> None:
    """The ledger holds the window's cash: fund the accounts it found short again from the
    cash they have (their rejected intents told), then send the net orders to the venue, or
    finish the window when nothing is left to trade."""
    if short:
        await store.bulk_plans(tx.conn)
        accounts = sorted(short)
        for row in await store.fund_again(tx.conn, window_id, accounts, domain.LEDGER_SHORT, cash=short):
            tx.emit(IntentsRejected(account_id=row["account_id"], window_id=window_id,
                                    reasons=json.loads(row["reasons"])))
        await store.reserve(tx.conn, window_id, accounts)
        orders = await store.net_again(tx.conn, window_id)
    else:
        orders = await store.orders_of(tx.conn, window_id)
    if orders:
        await store.set_status(tx.conn, window_id, "executing")
        tx.emit(ExecuteOrders(window_id=window_id, orders=orders), command=True)
    else:
        await store.mark_allocated(tx.conn, window_id, None, tx.now, 0)
        tx.emit(ReleaseWindowCash(window_id=window_id), command=True)


async def view_of(tx: Tx, window_id: uuid.UUID) -> WindowView:
    """A window's status and summary (the stored one, or computed while it has none yet)."""
    row = await store.window_of(tx.conn, window_id)
    if row is None:
        raise Rejected(f"unknown window {window_id}")
    summary = row["summary"]
    if summary is None:
        summary = await store.summarise(tx.conn, window_id)
    elif isinstance(summary, str):
        summary = json.loads(summary)
    return WindowView(window_id=row["window_id"], status=row["status"], closed_at=row["closed_at"], summary=summary)


def state_of(row: Mapping[str, Any]) -> WindowState:
    return WindowState(window_id=row["window_id"], status=row["status"], session=row["session"],
                       closed_at=row["closed_at"], batches=row["batches"], booked_batches=row["booked"],
                       waiting_for=domain.waiting_for(row["status"], row["batches"], row["booked"]),
                       abandoned=row["abandoned"])


OVERDUE = Gauge("m1_windows_overdue", "Windows still waiting for another service longer than "
                "M1_WINDOW_OVERDUE_SECONDS after they closed, by status", ["status"])


async def watch_overdue(service: Service) -> list[WindowState]:
    """Warn of every window still waiting for the ledger or the venue longer than
    ``window_overdue_seconds`` after it closed (one log line each, every time it looks) and
    set the ``m1_windows_overdue`` gauge; returns those windows."""
    limit = service.settings.window_overdue_seconds
    now = service.clock.now()
    async with service.pool.acquire() as conn:
        rows = await store.latest_windows(conn, unfinished=True, limit=500,
                                          closed_before=now - timedelta(seconds=limit))
    late = [state_of(row) for row in rows]
    for status in ("holding", "executing", "allocated"):
        OVERDUE.labels(status=status).set(sum(1 for w in late if w.status == status))
    for w in late:
        service.log.warning("window overdue", extra={
            "window_id": str(w.window_id), "status": w.status, "closed_at": w.closed_at.isoformat(),
            "minutes": int((now - w.closed_at).total_seconds() // 60), "waiting_for": w.waiting_for})
    return late


async def run_schedule(service: Service) -> WindowClosing | None:
    """Run the windows the NYSE schedule owes, once, as one window: the one due now, or
    those missed while the service was down (each account takes what it had pending when
    its latest missed window started). Windows due before the schedule first ran are not
    owed. Returns what it closed (None when nothing was owed)."""
    now = service.clock.now()
    async with service.emitting("schedule") as tx:
        await store.lock_closing(tx.conn)
        started = await store.schedule_started(tx.conn, now)
        owed = domain.owed_slots(now, started, await store.last_slot_ran(tx.conn))
        run = domain.run_of(owed)
        if run is None:
            return None
        slot = run.slot
        window_id = uuid.uuid5(_WINDOW_NAMESPACE, f"slot:{slot.starts_at.isoformat()}")
        closing = await close(tx, window_id, slot.starts_at, slot.session, run.other_at)
        for one in owed:
            await store.record_slot(tx.conn, one.starts_at, one.session, closing.window_id, now)
    service.log.info("scheduled window ran", extra={"slot": slot.starts_at.isoformat(), "session": slot.session,
                                                    "missed": [s.starts_at.isoformat() for s in owed[:-1]],
                                                    "window_id": str(closing.window_id), "intents": closing.intents})
    return closing


def register(service: Service) -> None:
    on = service.handler
    accounts_per_batch = service.settings.window_fill_batch_accounts
    if service.settings.window_schedule:
        # At start, before the service says it is up: a window missed while it was down
        # runs (once); then the schedule is kept.
        service.on_ready(run_schedule)
        service.every("scheduled window", service.settings.window_schedule_poll_seconds, run_schedule,
                      at_start=False)
    service.every("overdue windows", service.settings.window_watch_seconds, watch_overdue, at_start=False)

    @on(topology.WINDOW_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.set_account(tx.conn, event.account_id, event.plan.value)

    @on(topology.WINDOW_LEDGER, PositionChanged)
    async def position_changed(tx: Tx, event: PositionChanged) -> None:
        await store.set_position(tx.conn, event.account_id, event.symbol, event.quantity, event.version)

    @on(topology.WINDOW_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await store.set_prices(tx.conn, event.prices)

    @on(topology.WINDOW_COMMANDS, SetTradeWindow)
    async def set_trade_window(tx: Tx, cmd: SetTradeWindow) -> SetTradeWindow:
        await store.set_session(tx.conn, cmd.account_id, cmd.session)
        return cmd

    @on(topology.WINDOW_INTENTS, IntentsSubmitted)
    async def collect_intents(tx: Tx, event: IntentsSubmitted) -> None:
        try:
            domain.check_batch(event)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        if conflicts := await store.conflicting_intents(tx.conn, event.intents):
            raise Rejected("intent ids already used for different intents: " + ", ".join(map(str, conflicts)))
        await store.insert_intents(tx.conn, event.batch_id, event.intents, tx.now)

    on(topology.WINDOW_INTENTS, OrderIntentsSubmitted)(collect_intents)  # customer orders, same rules

    @on(topology.WINDOW_LEDGER, BookedBalances)
    async def fills_booked(tx: Tx, event: BookedBalances) -> None:
        """A batch of a window's fills booked: each account's cash and positions after them,
        and the cash its buys held is released; a few statements for the whole batch."""
        if not await store.window_exists(tx.conn, event.window_id):
            raise Rejected(f"fills booked for unknown window {event.window_id}")
        await store.apply_fills_booked(tx.conn, event.window_id, tx.body)
        await store.record_booked_batch(tx.conn, event.window_id, event.batch, tx.now)

    @on(topology.WINDOW_LEDGER, WindowCashHeld)
    async def cash_held(tx: Tx, event: WindowCashHeld) -> None:
        window = await store.lock_window(tx.conn, event.window_id)
        if window is None:
            raise Rejected(f"unknown window {event.window_id}")
        if window["status"] == "abandoned":  # held after an operator stopped the window: nothing will trade
            tx.emit(ReleaseWindowCash(window_id=event.window_id), command=True)
            return
        if window["status"] != "holding":
            return  # answered before (the ledger held it again under another message id)
        if event.short:  # held withdrawals, or a change the window's view of the cash did not show yet
            service.log.info("ledger has less cash than the window counted; funding those accounts again",
                             extra={"window_id": str(event.window_id), "accounts": len(event.short)})
        await trade(tx, event.window_id, dict(event.short))

    @on(topology.WINDOW_LEDGER, CashChanged)
    async def cash_changed(tx: Tx, event: CashChanged) -> None:
        await store.set_cash(tx.conn, event.account_id, event.cash, event.version)

    @on(topology.WINDOW_LEDGER, LoanChanged)
    async def loan_changed(tx: Tx, event: LoanChanged) -> None:
        """A margin loan drawn or repaid: equity for the $25,000 rule counts the loan."""
        await store.set_loan(tx.conn, event.account_id, event.loan, event.version)
        await store.set_cash(tx.conn, event.account_id, event.cash, event.version)

    @on(topology.WINDOW_COMMANDS, CancelIntents)
    async def cancel_intents(tx: Tx, cmd: CancelIntents) -> IntentsCancelled:
        if not cmd.intent_ids and cmd.batch_id is None:
            raise Rejected("name the intents to cancel: intent_ids, batch_id or both")
        started = None  # a scheduled window that has started and that the schedule has not run yet
        if service.settings.window_schedule and (began := await store.schedule_began(tx.conn)) is not None:
            started = domain.run_of(domain.owed_slots(tx.now, began, await store.last_slot_ran(tx.conn)))
        cancelled, refused = await store.cancel(tx.conn, cmd.intent_ids, cmd.batch_id, started=started)
        outcome = IntentsCancelled(cancelled=cancelled, refused=refused)
        tx.emit(outcome)  # also an event: the order service learns the outcome of its cancels
        return outcome

    @on(topology.WINDOW_COMMANDS, CloseWindow)
    async def close_window(tx: Tx, cmd: CloseWindow) -> WindowClosing:
        return await close(tx, uuid.uuid5(_WINDOW_NAMESPACE, tx.message_id))

    @on(topology.WINDOW_COMMANDS, GetWindow, idempotent=False)
    async def get_window(tx: Tx, query: GetWindow) -> WindowView:
        return await view_of(tx, query.window_id)

    @on(topology.WINDOW_COMMANDS, ListWindows, idempotent=False)
    async def list_windows(tx: Tx, query: ListWindows) -> WindowList:
        rows = await store.latest_windows(tx.conn, unfinished=query.unfinished, limit=query.limit)
        return WindowList(windows=[state_of(row) for row in rows])

    @on(topology.WINDOW_COMMANDS, AbandonWindow)
    async def abandon_window(tx: Tx, cmd: AbandonWindow) -> WindowView:
        """Stop a window that has sent no orders: its frozen intents carry over to the next
        window (holders told), and the ledger releases what it holds for it, now or when its
        hold arrives later (``cash_held``)."""
        window = await store.lock_window(tx.conn, cmd.window_id)
        if window is None:
            raise Rejected(f"unknown window {cmd.window_id}")
        try:
            domain.check_abandon(cmd.window_id, window["status"])
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        if window["status"] == "holding":
            reason = domain.abandoned_reason(cmd.reason)
            await store.bulk_plans(tx.conn)
            symbols = await store.frozen_symbols(tx.conn, cmd.window_id)
            for row in await store.carry_over(tx.conn, cmd.window_id, dict.fromkeys(symbols, reason),
                                              mark_orders=False):
                tx.emit(IntentsCarriedOver(account_id=row["account_id"], window_id=cmd.window_id,
                                           symbols=row["symbols"], intents=row["intents"], reason=row["reason"]))
            await store.mark_abandoned(tx.conn, cmd.window_id, cmd.reason, tx.now)
            tx.emit(ReleaseWindowCash(window_id=cmd.window_id), command=True)
            service.log.warning("window abandoned by an operator", extra={
                "window_id": str(cmd.window_id), "reason": cmd.reason, "symbols": len(symbols)})
        return await view_of(tx, cmd.window_id)

    @on(topology.WINDOW_EXECUTIONS, OrdersExecuted)
    async def allocate_fills(tx: Tx, event: OrdersExecuted) -> None:
        window = await store.lock_window(tx.conn, event.window_id)
        if window is None:
            raise Rejected(f"unknown window {event.window_id}")
        if window["status"] == "allocated":
            return  # allocated before (the same executions again under another message id)
        if window["status"] == "holding":
            raise Rejected(f"window {event.window_id} has sent no orders yet: "
                           "the ledger has not answered its cash hold")
        if window["status"] == "abandoned":
            raise Rejected(f"window {event.window_id} was abandoned before it sent orders: it has nothing to allocate")
        await store.bulk_plans(tx.conn)
        try:
            domain.check_executions(await store.orders_of(tx.conn, event.window_id), event.executions, event.halted,
                                    event.refused)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        touched: set[str] = set()
        if event.halted:
            for row in await store.carry_over(tx.conn, event.window_id, event.halted):
                touched.add(row["account_id"])
                tx.emit(IntentsCarriedOver(account_id=row["account_id"], window_id=event.window_id,
                                           symbols=row["symbols"], intents=row["intents"], reason=row["reason"]))
        rejected: dict[str, dict[str, str]] = {}
        if event.refused:
            for row in await store.reject_refused(tx.conn, event.window_id, event.refused):
                touched.add(row["account_id"])
                rejected.setdefault(row["account_id"], {}).update(json.loads(row["reasons"]))
        if touched:
            # Buys paid for by a sell that did not trade are funded again without it.
            for row in await store.fund_again(tx.conn, event.window_id, sorted(touched)):
                rejected.setdefault(row["account_id"], {}).update(json.loads(row["reasons"]))
        for account_id, reasons in sorted(rejected.items()):
            tx.emit(IntentsRejected(account_id=account_id, window_id=event.window_id, reasons=reasons))
        await store.record_executions(tx.conn, event.window_id, event.executions)
        await store.allocate(tx.conn, event.window_id)
        await store.reserve_fills(tx.conn, event.window_id)
        batches = await store.fills_json_by_batch(tx.conn, event.window_id, accounts_per_batch)
        await store.mark_allocated(tx.conn, event.window_id, event.executed_at, tx.now, len(batches),
                                   accounts_per_batch)
        if not batches:  # nothing traded: no batch will release the cash the ledger holds
            tx.emit(ReleaseWindowCash(window_id=event.window_id), command=True)
        residues = await store.residues_of(tx.conn, event.window_id)
        for index, fills in enumerate(batches):
            envelope = FillsBatch(window_id=event.window_id, batch=index, batches=len(batches), fills=[],
                                  executions=list(event.executions) if index == 0 else [],
                                  residues=residues if index == 0 else []).model_dump_json()
            # the envelope ends '..."fills":[],"executions":...': the SQL-built fills go in there
            head, _, tail = envelope.partition('"fills":[]')
            tx.emit_json(FillsBatch, f'{head}"fills":{fills}{tail}'.encode())
