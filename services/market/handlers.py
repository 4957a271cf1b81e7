"""Market subscribers and start-up: parse the contract, one transaction, emit what changed."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from services.market import domain, store
from shared import topology
from shared.contracts import Execution, ExecuteOrders, OrdersExecuted, PricesChanged, SetPrices
from shared.messaging import Rejected, Tx, write_outbox
from shared.service import Service

SAMPLE_PRICES = Path(__file__).parent / "data" / "prices.csv"


async def publish_price_snapshot(service: Service) -> None:
    """At start: load the sample price list into an empty price table, then publish every
    active price as one ``PricesChanged`` through the outbox, in one transaction."""
    listings = domain.parse_price_list(SAMPLE_PRICES.read_text())
    now = service.clock.now()
    message_id = f"market-start:{uuid4()}"
    async with service.pool.acquire() as conn, conn.transaction():
        await store.seed_prices(conn, listings, now)
        prices = await store.active_prices(conn)
        tx = Tx(conn, service.name, message_id, message_id, PricesChanged.TYPE, now)
        if prices:
            tx.emit(PricesChanged(prices=prices, as_of=now))
        await write_outbox(conn, tx.correlation_id, tx.outgoing)
    service.relay.wake()


def register(service: Service) -> None:
    on = service.handler
    service.on_ready(publish_price_snapshot)

    @on(topology.MARKET_COMMANDS, SetPrices)
    async def set_prices(tx: Tx, cmd: SetPrices) -> PricesChanged:
        changed = await store.set_prices(tx.conn, cmd.prices, tx.now)
        event = PricesChanged(prices=changed, as_of=tx.now)
        if changed:
            tx.emit(event)
        return event

    @on(topology.MARKET_COMMANDS, ExecuteOrders)
    async def execute_orders(tx: Tx, cmd: ExecuteOrders) -> OrdersExecuted:
        if done := await store.executions_of(tx.conn, cmd.window_id):
            # Executed before (the same orders sent again under another message id): answer
            # with the original executions and emit nothing.
            return OrdersExecuted(window_id=cmd.window_id, executed_at=done[0]["executed_at"],
                                  executions=[Execution(**{k: r[k] for k in Execution.model_fields}) for r in done])
        quotes = await store.quotes(tx.conn, [o.symbol for o in cmd.orders])
        try:
            executions = domain.execute(cmd.orders, quotes)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        await store.insert_executions(tx.conn, cmd.window_id, list(zip(cmd.orders, executions, strict=True)), tx.now)
        event = OrdersExecuted(window_id=cmd.window_id, executions=executions, executed_at=tx.now)
        tx.emit(event)
        return event
