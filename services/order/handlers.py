"""Order subscribers: place and cancel orders (commands), keep the projections that validate
them, and follow each order's intent through the window to exactly one final state."""

from __future__ import annotations

import uuid

import asyncpg

from services.order import domain, store
from shared import topology
from shared.contracts import (
    AccountFills,
    AccountOpened,
    CancelIntents,
    CancelOrder,
    CashChanged,
    DepositBooked,
    FillsBooked,
    FundingRejected,
    GetOrder,
    GetOrders,
    Intent,
    IntentsCancelled,
    IntentsCarriedOver,
    IntentSource,
    IntentsRejected,
    OrderChanged,
    OrderIntentsSubmitted,
    OrderRefused,
    Orders,
    OrderState,
    OrderStatus,
    OrderView,
    PieSet,
    PlaceOrder,
    PositionChanged,
    PricesChanged,
    Side,
)
from shared.messaging import Rejected, Tx
from shared.projections import apply_position_list
from shared.service import Service

# Order ids derive from the placing command's message id: the inbox handles each id once.
_ORDER_NAMESPACE = uuid.UUID("5f1c2e7a-93d4-4b8e-a0c6-1d2e3f4a5b6c")


def state(row: asyncpg.Record) -> OrderState:
    waiting = None
    if row["status"] == OrderStatus.PENDING and not row["submitted"] and row["deposit_id"] is not None:
        waiting = f"deposit {row['deposit_id']} of ${row['deposit_amount']:,.2f}"
    fields = {k: row[k] for k in ("order_id", "account_id", "symbol", "side", "amount", "quantity", "status",
                                  "deposit_id", "deposit_amount", "cancel_requested", "filled_quantity",
                                  "filled_amount", "price", "window_id", "reason", "placed_at", "updated_at",
                                  "version", "final", "intent_id", "part", "rest_amount", "rest_quantity")}
    return OrderState(**fields, waiting_for=waiting)


def changed(tx: Tx, row: asyncpg.Record, change: str) -> OrderState:
    """Publish the order's new state; returns it."""
    order = state(row)
    tx.emit(OrderChanged(account_id=order.account_id, change=change, order=order))
    return order


def submit(tx: Tx, row: asyncpg.Record) -> None:
    """Send the order's current intent to the window, of source ``order`` (part 1's id is the
    order's; a carried rest's is its own), asking the order's amount or quantity, or the rest."""
    intent = Intent(intent_id=row["intent_id"], account_id=row["account_id"], symbol=row["symbol"],
                    side=Side(row["side"]), amount=row["rest_amount"], quantity=row["rest_quantity"],
                    source=IntentSource.ORDER)
    tx.emit(OrderIntentsSubmitted(account_id=row["account_id"], batch_id=row["intent_id"], intents=[intent]))


def _as_order(row: asyncpg.Record) -> domain.Order:
    unbooked = row["deposit_amount"] if row["deposit_unbooked"] else domain.ZERO
    return domain.Order(Side(row["side"]), row["symbol"], row["rest_amount"], row["rest_quantity"], unbooked)


def _request_words(raw: dict) -> str:
    """The refused request in words, from its raw body (which may not even parse)."""
    side, symbol = raw.get("side"), raw.get("symbol")
    if side in ("buy", "sell") and isinstance(symbol, str):
        if isinstance(raw.get("amount"), str):
            return f"{side} ${raw['amount']} of {symbol}"[:200]
        if isinstance(raw.get("quantity"), str):
            return f"{side} {raw['quantity']} shares of {symbol}"[:200]
    return "order"


def register(service: Service) -> None:
    on = service.handler

    # ------------------------------------------------------------ projections

    @on(topology.ORDER_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.upsert_account(tx.conn, event.account_id, event.kind, event.plan, event.opened_at)

    @on(topology.ORDER_LEDGER, CashChanged)
    async def cash_changed(tx: Tx, event: CashChanged) -> None:
        await store.set_cash(tx.conn, event.account_id, event.cash, event.version)

    @on(topology.ORDER_LEDGER, PositionChanged)
    async def position_changed(tx: Tx, event: PositionChanged) -> None:
        await store.set_positions(tx.conn, event.account_id, {event.symbol: event.quantity}, event.version)

    @on(topology.ORDER_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await store.set_prices(tx.conn, event.prices, event.as_of)

    @on(topology.ORDER_PIE, PieSet)
    async def pie_changed(tx: Tx, event: PieSet) -> None:
        await store.set_pie(tx.conn, event.account_id, event.pie.name, domain.leaves(event.pie), tx.now, event.version)

    # ------------------------------------------------------------ commands

    async def refused(tx: Tx, raw: dict | None, reason: str) -> None:
        """Tell a known account's holder that an order request was refused, and why."""
        raw = raw or {}
        account_id, request = raw.get("account_id"), _request_words(raw)
        if tx.routing_key == CancelOrder.TYPE:
            try:
                row = await store.order(tx.conn, uuid.UUID(str(raw.get("order_id"))))
            except ValueError:
                row = None
            if row is None:
                return
            account_id = row["account_id"]
            request = "cancel of order " + str(row["order_id"])[:8] + ": " + domain.describe(
                row["side"], row["symbol"], row["amount"], row["quantity"])
        if isinstance(account_id, str) and await store.account_exists(tx.conn, account_id):
            tx.emit(OrderRefused(account_id=account_id, request=request, reason=reason))

    @on(topology.ORDER_COMMANDS, PlaceOrder, on_reject=refused)
    async def place_order(tx: Tx, cmd: PlaceOrder) -> OrderView:
        known = await store.lock_account(tx.conn, cmd.account_id)
        snap = await store.snapshot(tx.conn, cmd.account_id, cmd.symbol)
        deposit = await store.deposit(tx.conn, cmd.deposit_id) if cmd.deposit_id else None
        if deposit is not None and deposit["account_id"] != cmd.account_id:
            raise Rejected(f"deposit {cmd.deposit_id} is another account's")
        if deposit is not None and deposit["status"] == "rejected":
            raise Rejected(f"deposit {cmd.deposit_id} was refused: {deposit['reason']}")
        unbooked = cmd.deposit_amount if cmd.deposit_id and deposit is None else domain.ZERO
        order = domain.Order(cmd.side, cmd.symbol, cmd.amount, cmd.quantity, unbooked)
        others = [_as_order(r) for r in await store.open_orders(tx.conn, cmd.account_id)] if known else []
        prices = await store.prices_of(tx.conn, sorted({cmd.symbol, *(o.symbol for o in others)}))
        if errors := domain.check(order, account_known=known, pie_symbols=snap["pie_symbols"], cash=snap["cash"],
                                  held=snap["held"], open_orders=others, prices=prices):
            raise Rejected("; ".join(errors), errors=errors)
        order_id = uuid.uuid5(_ORDER_NAMESPACE, tx.message_id)
        waits = cmd.deposit_id is not None and deposit is None
        row = await store.insert_order(tx.conn, order_id, cmd.account_id, cmd.symbol, cmd.side.value, cmd.amount,
                                       cmd.quantity, cmd.deposit_id, cmd.deposit_amount, not waits, tx.now)
        if not waits:
            submit(tx, row)
        return OrderView(order=changed(tx, row, "placed"))

    @on(topology.ORDER_COMMANDS, CancelOrder, on_reject=refused)
    async def cancel_order(tx: Tx, cmd: CancelOrder) -> OrderView:
        row = await store.order(tx.conn, cmd.order_id, lock=True)
        if row is None:
            raise Rejected(f"unknown order {cmd.order_id}")
        if row["final"]:
            raise Rejected(f"order {cmd.order_id} is already {row['status'].replace('_', ' ')}")
        if row["cancel_requested"]:
            return OrderView(order=state(row))  # asked before; the window's answer follows
        if not row["submitted"]:  # still waiting for its deposit: nothing at the window yet
            row = await store.update(tx.conn, cmd.order_id, tx.now, status=OrderStatus.CANCELLED.value, final=True,
                                     reason="cancelled by the holder before it was sent to a window")
            return OrderView(order=changed(tx, row, "cancelled"))
        row = await store.update(tx.conn, cmd.order_id, tx.now, cancel_requested=True)
        tx.emit(CancelIntents(intent_ids=[row["intent_id"]]), command=True)
        return OrderView(order=changed(tx, row, "cancel_requested"))

    @on(topology.ORDER_COMMANDS, GetOrder, idempotent=False)
    async def get_order(tx: Tx, query: GetOrder) -> OrderView:
        row = await store.order(tx.conn, query.order_id)
        if row is None:
            raise Rejected(f"unknown order {query.order_id}")
        return OrderView(order=state(row))

    @on(topology.ORDER_COMMANDS, GetOrders, idempotent=False)
    async def get_orders(tx: Tx, query: GetOrders) -> Orders:
        rows = await store.orders_of(tx.conn, query.account_id, query.limit)
        return Orders(account_id=query.account_id, orders=[state(r) for r in rows])

    # ------------------------------------------------------------ funding of orders

    @on(topology.ORDER_LEDGER, DepositBooked)
    async def deposit_booked(tx: Tx, event: DepositBooked) -> None:
        """An order waiting for this deposit goes to the window now."""
        await store.record_deposit(tx.conn, event.deposit_id, event.account_id, "booked", None, tx.now)
        for row in await store.lock_waiting_for(tx.conn, event.deposit_id):
            if row["account_id"] != event.account_id:
                continue
            row = await store.update(tx.conn, row["order_id"], tx.now, submitted=True)
            submit(tx, row)
            changed(tx, row, "funded")

    @on(topology.ORDER_LEDGER, FundingRejected)
    async def funding_rejected(tx: Tx, event: FundingRejected) -> None:
        """An order waiting for a deposit the ledger refused is rejected with the reason."""
        if event.funding_type != "deposit" or event.funding_id is None:
            return
        try:
            deposit_id = uuid.UUID(event.funding_id)
        except ValueError:
            return
        await store.record_deposit(tx.conn, deposit_id, event.account_id, "rejected", event.reason, tx.now)
        for row in await store.lock_waiting_for(tx.conn, deposit_id):
            if row["account_id"] != event.account_id:
                continue
            row = await store.update(tx.conn, row["order_id"], tx.now, status=OrderStatus.REJECTED.value, final=True,
                                     reason=f"the deposit that was to pay for it was refused: {event.reason}")
            changed(tx, row, "rejected")

    # ------------------------------------------------------------ outcomes at the window

    @on(topology.ORDER_LEDGER, FillsBooked)
    async def fills_booked(tx: Tx, event: FillsBooked) -> None:
        """A booked fills batch: each account's part in turn, in the batch's order (by account
        id, so two transactions lock the rows of the accounts they share in the same order)."""
        for account in event.accounts:
            await account_fills_booked(tx, account)

    async def account_fills_booked(tx: Tx, account: AccountFills) -> None:
        await store.set_cash(tx.conn, account.account_id, account.cash, account.version)
        await apply_position_list(tx.conn, account.account_id, account.positions, account.version)
        fills = {f.intent_id: f for f in account.fills}
        for row in await store.lock_open(tx.conn, list(fills), account.account_id):
            fill = fills[row["intent_id"]]
            result = domain.after_fill(Side(row["side"]), row["rest_amount"], row["rest_quantity"],
                                       row["filled_quantity"], row["filled_amount"], row["price"],
                                       fill.quantity, fill.amount, fill.price)
            fields = dict(status=result.status.value, final=result.final, reason=result.reason,
                          filled_quantity=result.filled_quantity, filled_amount=result.filled_amount,
                          price=result.price, window_id=account.window_id, cancel_requested=False, cancel_attempts=0)
            if result.carried:  # the rest is the order's next intent, for the next window
                part = row["part"] + 1
                fields.update(part=part, intent_id=domain.part_intent(row["order_id"], part),
                              rest_amount=result.rest_amount, rest_quantity=result.rest_quantity)
            row = await store.update(tx.conn, row["order_id"], tx.now, **fields)
            if result.carried:
                submit(tx, row)
            changed(tx, row, result.status.value)

    @on(topology.ORDER_WINDOW, IntentsCarriedOver)
    async def carried_over(tx: Tx, event: IntentsCarriedOver) -> None:
        for row in await store.lock_open(tx.conn, event.intents, event.account_id):
            if row["window_id"] == event.window_id:
                continue  # this carry-over again (a rest is never in the window that filled its order's part)
            # a partly executed order stays partially_executed: its fills are kept
            status = (OrderStatus.PARTIALLY_EXECUTED if row["status"] == OrderStatus.PARTIALLY_EXECUTED
                      else OrderStatus.CARRIED_OVER)
            row = await store.update(tx.conn, row["order_id"], tx.now, status=status.value, window_id=event.window_id,
                                     reason=event.reason)
            changed(tx, row, "carried_over")

    @on(topology.ORDER_WINDOW, IntentsRejected)
    async def intents_rejected(tx: Tx, event: IntentsRejected) -> None:
        ids = [uuid.UUID(k) for k in event.reasons]
        for row in await store.lock_open(tx.conn, ids, event.account_id):
            status, reason = domain.rest_ended(row["filled_quantity"] is not None, row["rest_amount"],
                                               row["rest_quantity"], rejected=event.reasons[str(row["intent_id"])])
            row = await store.update(tx.conn, row["order_id"], tx.now, status=status.value, final=True,
                                     window_id=event.window_id, reason=reason, cancel_requested=False)
            changed(tx, row, status.value)

    @on(topology.ORDER_WINDOW, IntentsCancelled)
    async def intents_cancelled(tx: Tx, event: IntentsCancelled) -> None:
        """The window's answer to a cancel (of any sender's: ids that are no order's current
        intent are skipped)."""
        refusals = {uuid.UUID(k): v for k, v in event.refused.items()}
        for row in await store.lock_open(tx.conn, [*event.cancelled, *refusals]):
            order_id, intent_id = row["order_id"], row["intent_id"]
            if intent_id in refusals and domain.cancel_outcome(refusals[intent_id]) is None:
                if row["cancel_requested"] and domain.ask_again(refusals[intent_id], row["cancel_attempts"]):
                    # The cancel overtook the order's intent on its way to the window: ask again.
                    await store.update(tx.conn, order_id, tx.now, cancel_attempts=row["cancel_attempts"] + 1)
                    tx.emit(CancelIntents(intent_ids=[intent_id]), command=True)
                elif row["cancel_requested"]:
                    row = await store.update(tx.conn, order_id, tx.now, cancel_requested=False,
                                             reason=f"not cancelled: {refusals[intent_id]}")
                    changed(tx, row, "cancel_refused")
                continue
            status, reason = domain.rest_ended(row["filled_quantity"] is not None, row["rest_amount"],
                                               row["rest_quantity"])
            row = await store.update(tx.conn, order_id, tx.now, status=status.value, final=True,
                                     cancel_requested=False, reason=reason)
            changed(tx, row, status.value)  # partially_executed when part of it traded before
