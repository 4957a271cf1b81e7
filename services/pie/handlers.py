"""Pie subscribers: keep the ledger and market projections, set pies, auto-invest, answer
portfolio queries."""

from __future__ import annotations

import uuid

from services.pie import domain, store
from shared import topology
from shared.contracts import (
    AccountOpened,
    CashChanged,
    FillsBooked,
    GetPortfolio,
    Intent,
    IntentsSubmitted,
    IntentSource,
    PieSet,
    PieSpec,
    PortfolioView,
    PositionChanged,
    PricesChanged,
    SetPie,
    Side,
)
from shared.messaging import Rejected, Tx
from shared.service import Service

# Intent and batch ids derive from the causing message id, so a redone handler submits the
# same ids and the window can dedupe them.
_INTENT_NAMESPACE = uuid.UUID("3f9c1a52-7d0e-4b8e-8a7c-5e2b9d4f6a10")


def _id(tx: Tx, suffix: str) -> uuid.UUID:
    return uuid.uuid5(_INTENT_NAMESPACE, f"{tx.message_id}:{suffix}")


async def _pie_of(tx: Tx, account_id: str) -> PieSpec | None:
    text = await store.pie_json(tx.conn, account_id)
    return PieSpec.model_validate_json(text) if text is not None else None


async def auto_invest(tx: Tx, account_id: str) -> None:
    """Submit buys for the account's investable cash, split by its pie (the account's row is
    locked by the caller)."""
    account = await store.get_account(tx.conn, account_id)
    pie = await _pie_of(tx, account_id)
    plan = domain.auto_invest(pie, enabled=account["auto_invest"], cash=account["cash"],
                              minimum_cash=account["minimum_cash"],
                              pending_buys=await store.pending_buys(tx.conn, account_id))
    if plan is None or not plan.buys:
        return
    batch_id = _id(tx, "batch")
    new = [store.NewIntent(_id(tx, f"intent:{i}"), b.path, b.symbol, Side.BUY.value, b.amount,
                           IntentSource.AUTO_INVEST.value) for i, b in enumerate(plan.buys)]
    await store.insert_intents(tx.conn, account_id, batch_id, new, tx.now)
    tx.emit(IntentsSubmitted(account_id=account_id, batch_id=batch_id, intents=[
        Intent(intent_id=n.intent_id, account_id=account_id, symbol=n.symbol, side=Side.BUY, amount=n.amount,
               source=IntentSource.AUTO_INVEST) for n in new
    ]))


def register(service: Service) -> None:
    on = service.handler

    # ---------------------------------------------------------------- ledger projection

    @on(topology.PIE_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.open_account(tx.conn, event.account_id, event.kind.value, event.plan.value, event.opened_at)

    @on(topology.PIE_LEDGER, CashChanged)
    async def cash_changed(tx: Tx, event: CashChanged) -> None:
        await store.lock_account(tx.conn, event.account_id)
        if await store.apply_cash(tx.conn, event.account_id, event.cash, event.version):
            await auto_invest(tx, event.account_id)

    @on(topology.PIE_LEDGER, PositionChanged)
    async def position_changed(tx: Tx, event: PositionChanged) -> None:
        await store.lock_account(tx.conn, event.account_id)
        await store.apply_position(tx.conn, event.account_id, event.symbol, event.quantity, event.version)

    @on(topology.PIE_LEDGER, FillsBooked)
    async def fills_booked(tx: Tx, event: FillsBooked) -> None:
        await store.lock_account(tx.conn, event.account_id)
        cash_moved = await store.apply_cash(tx.conn, event.account_id, event.cash, event.version)
        await store.apply_positions(tx.conn, event.account_id, event.positions, event.version)
        filled = await store.book_fills(tx.conn, event.account_id, event.window_id, event.fills, tx.now)
        if cash_moved or filled:
            await auto_invest(tx, event.account_id)

    # ---------------------------------------------------------------- market projection

    @on(topology.PIE_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await store.apply_prices(tx.conn, event.prices, event.as_of)

    # ---------------------------------------------------------------- commands and queries

    @on(topology.PIE_COMMANDS, SetPie)
    async def set_pie(tx: Tx, cmd: SetPie) -> PieSet:
        errors = []
        if await store.get_account(tx.conn, cmd.account_id) is None:
            errors.append(f"unknown account {cmd.account_id}")
        symbols = sorted({leaf.symbol for leaf in domain.leaves(cmd.pie)})
        errors += domain.validate(cmd.pie, (await store.prices_of(tx.conn, symbols)).keys())
        if errors:
            raise Rejected("pie refused: " + "; ".join(errors), errors=errors)
        await store.set_pie(tx.conn, cmd.account_id, cmd.pie.name, cmd.pie.model_dump_json(), tx.now)
        event = PieSet(account_id=cmd.account_id, pie=cmd.pie)
        tx.emit(event)
        return event

    @on(topology.PIE_COMMANDS, GetPortfolio, idempotent=False)
    async def get_portfolio(tx: Tx, query: GetPortfolio) -> PortfolioView:
        snap = await store.snapshot(tx.conn, query.account_id)
        if snap is None:
            raise Rejected(f"unknown account {query.account_id}")
        pie = PieSpec.model_validate_json(snap.tree_json) if snap.tree_json is not None else None
        slices = domain.view_slices(pie, snap.holdings, snap.prices) if pie is not None else []
        totals = domain.totals(slices, snap.cash)
        return PortfolioView(account_id=query.account_id, pie_name=pie.name if pie else None, cash=snap.cash,
                             pending_buys=snap.pending_buys, invested=totals.invested, total=totals.total,
                             slices=slices)
