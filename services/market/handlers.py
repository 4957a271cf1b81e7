"""Market subscribers and start-up: parse the contract, one transaction, emit what changed."""

from __future__ import annotations

from pathlib import Path

from services.market import domain, store
from shared import topology
from shared.contracts import (
    AnnounceDividend,
    DividendAnnounced,
    Execution,
    ExecuteOrders,
    HaltSecurity,
    HaltsView,
    OrdersExecuted,
    PricesChanged,
    ResumeSecurity,
    SecurityStatusChanged,
    SetIndexLevel,
    SetPrices,
    SetSecurityActive,
)
from shared.messaging import Rejected, Tx
from shared.service import Service

SAMPLE_PRICES = Path(__file__).parent / "data" / "prices.csv"


async def publish_price_snapshot(service: Service) -> None:
    """At start: load the sample price list into an empty price table, then publish every
    active price as one ``PricesChanged`` through the outbox, in one transaction."""
    listings = domain.parse_price_list(SAMPLE_PRICES.read_text())
    async with service.emitting("start") as tx:
        await store.seed_prices(tx.conn, listings, tx.now)
        if prices := await store.active_prices(tx.conn):
            tx.emit(PricesChanged(prices=prices, as_of=tx.now))


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

    @on(topology.MARKET_COMMANDS, SetSecurityActive)
    async def set_security_active(tx: Tx, cmd: SetSecurityActive) -> SecurityStatusChanged:
        """Delist a security (no longer traded: orders for it are refused; its price no
        longer published) or list it again (its price published again); announced once per
        change."""
        row, changed = await store.set_active(tx.conn, cmd.symbol, cmd.active, tx.now)
        if row is None:
            raise Rejected(f"unknown symbol {cmd.symbol}")
        event = SecurityStatusChanged(symbol=cmd.symbol, active=cmd.active, reason=None if cmd.active else cmd.reason,
                                      price=row["price"], changed_at=tx.now)
        if changed:
            tx.emit(event)
            if cmd.active:
                tx.emit(PricesChanged(prices={cmd.symbol: row["price"]}, as_of=tx.now))
        return event

    @on(topology.MARKET_COMMANDS, ExecuteOrders)
    async def execute_orders(tx: Tx, cmd: ExecuteOrders) -> OrdersExecuted:
        if await store.handled_window(tx.conn, cmd.window_id):
            # Executed before (the same orders sent again under another message id): answer
            # with the original executions and emit nothing.
            done = await store.executions_of(tx.conn, cmd.window_id)
            halted = await store.halted_of(tx.conn, cmd.window_id)
            refused = await store.halted_of(tx.conn, cmd.window_id, refused=True)
            executed_at = done[0]["executed_at"] if done else tx.now
            return OrdersExecuted(window_id=cmd.window_id, executed_at=executed_at, halted=halted, refused=refused,
                                  executions=[Execution(**{k: r[k] for k in Execution.model_fields}) for r in done])
        quotes = await store.quotes(tx.conn, [o.symbol for o in cmd.orders])
        breaker = await store.market_wide_halt(tx.conn, tx.now)
        market_wide = (f"market-wide circuit breaker level {breaker['level']}: trading halted until "
                       f"{breaker['until'].isoformat()}") if breaker else None
        try:
            executions, halted, refused = domain.execute(cmd.orders, quotes, await store.halts(tx.conn), market_wide,
                                                service.settings.market_slippage_bps)
        except domain.Refusal as exc:
            raise Rejected(str(exc)) from exc
        by_symbol = {o.symbol: o for o in cmd.orders}
        await store.insert_executions(tx.conn, cmd.window_id, [(by_symbol[e.symbol], e) for e in executions], tx.now)
        await store.insert_halted(tx.conn, cmd.window_id, halted, refused)
        event = OrdersExecuted(window_id=cmd.window_id, executions=executions, executed_at=tx.now, halted=halted,
                               refused=refused)
        tx.emit(event)
        return event

    @on(topology.MARKET_COMMANDS, HaltSecurity)
    async def halt_security(tx: Tx, cmd: HaltSecurity) -> HaltsView:
        await store.halt(tx.conn, cmd.symbol, cmd.reason, tx.now)
        return await halts_view(tx)

    @on(topology.MARKET_COMMANDS, ResumeSecurity)
    async def resume_security(tx: Tx, cmd: ResumeSecurity) -> HaltsView:
        await store.resume(tx.conn, cmd.symbol)
        return await halts_view(tx)

    @on(topology.MARKET_COMMANDS, SetIndexLevel)
    async def set_index_level(tx: Tx, cmd: SetIndexLevel) -> HaltsView:
        day = tx.now.astimezone(domain.NEW_YORK).date()
        breaker = domain.circuit_breaker(cmd.level, cmd.prior_close, tx.now, await store.breakers_on(tx.conn, day))
        if breaker is not None:
            await store.trip(tx.conn, breaker.day, breaker.level, tx.now, breaker.until)
        return await halts_view(tx)

    @on(topology.MARKET_COMMANDS, AnnounceDividend)
    async def announce_dividend(tx: Tx, cmd: AnnounceDividend) -> DividendAnnounced:
        """A listed security's dividend: published as ``market.dividend`` (the ledger pays it)."""
        if cmd.symbol not in await store.quotes(tx.conn, [cmd.symbol]):
            raise Rejected(f"unknown security {cmd.symbol}")
        event = DividendAnnounced(symbol=cmd.symbol, amount_per_share=cmd.amount_per_share, ex_date=cmd.ex_date,
                                  pay_date=cmd.pay_date)
        tx.emit(event)
        return event

    async def halts_view(tx: Tx) -> HaltsView:
        breaker = await store.market_wide_halt(tx.conn, tx.now)
        return HaltsView(halts=await store.halts(tx.conn),
                         market_wide=f"circuit breaker level {breaker['level']}" if breaker else None,
                         until=breaker["until"] if breaker else None)
