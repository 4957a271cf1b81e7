"""Margin subscribers. For now they keep the projections the equity watch will read:
accounts (kind, plan, cash), positions and prices, each fed by the events that change it."""

from __future__ import annotations

from services.margin import store
from shared import topology
from shared.contracts import AccountOpened, CashChanged, PositionChanged, PricesChanged
from shared.messaging import Tx
from shared.service import Service


def register(service: Service) -> None:
    on = service.handler

    @on(topology.MARGIN_LEDGER, AccountOpened)
    async def account_opened(tx: Tx, event: AccountOpened) -> None:
        await store.open_account(tx.conn, event.account_id, event.kind, event.plan)

    @on(topology.MARGIN_LEDGER, CashChanged)
    async def cash_changed(tx: Tx, event: CashChanged) -> None:
        await store.set_cash(tx.conn, event.account_id, event.cash, event.version)

    @on(topology.MARGIN_LEDGER, PositionChanged)
    async def position_changed(tx: Tx, event: PositionChanged) -> None:
        await store.set_position(tx.conn, event.account_id, event.symbol, event.quantity, event.version)

    @on(topology.MARGIN_MARKET, PricesChanged)
    async def prices_changed(tx: Tx, event: PricesChanged) -> None:
        await store.set_prices(tx.conn, event.prices, event.as_of)
