"""The window and the market together against the real RabbitMQ and PostgreSQL: intents in,
a window closed by command, net orders executed by the venue, fills allocated back."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from services.ledger.domain import fills as ledger_entry
from services.window import domain
from services.window.handlers import watch_overdue
from shared import topology
from shared.contracts import (
    CashChanged,
    CloseWindow,
    ExecuteOrders,
    AccountFills,
    FillsBatch,
    FillsBooked,
    Intent,
    IntentsRejected,
    IntentsSubmitted,
    IntentSource,
    ListWindows,
    LoanChanged,
    NetOrder,
    OrdersExecuted,
    PositionChanged,
    PricesChanged,
    SecurityStatusChanged,
    SetPrices,
    SetSecurityActive,
    Side,
    WindowClosing,
)
from tests.support import LedgerHolds, dlq_messages, eventually, fetch, fetchval

pytestmark = pytest.mark.integration

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


def new_symbol() -> str:
    """A security no other test trades, so that prices and windows do not interfere."""
    return "Z" + uuid.uuid4().hex[:7].upper()


def new_account() -> str:
    return f"acc-{uuid.uuid4().hex[:8]}"


def intent(account: str, symbol: str, side: Side, amount: str) -> Intent:
    return Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, amount=amount,
                  source=IntentSource.AUTO_INVEST)


async def submit(bus, settings, account: str, *intents: Intent) -> IntentsSubmitted:
    batch = IntentsSubmitted(account_id=account, batch_id=uuid.uuid4(), intents=list(intents))
    message_id = str(uuid.uuid4())
    await bus.publish_json(IntentsSubmitted.TYPE, batch.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)
    return batch


async def give_cash(bus, settings, account: str, amount: str, version: int = 1) -> None:
    """What the ledger would report: the account's cash, for the window's funding."""
    event = CashChanged(account_id=account, cash=amount, delta=amount, cause="deposit", cause_id=str(uuid.uuid4()),
                        version=version)
    message_id = str(uuid.uuid4())
    await bus.publish_json(CashChanged.TYPE, event.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)


async def handled(settings, message_id: str) -> None:
    """Wait until the window has committed its handling of ``message_id`` (the inbox row is
    written in the same transaction as the effect)."""
    await eventually(lambda: fetchval(settings.database_url,
                                      'SELECT count(*) FROM "window".inbox WHERE message_id = $1', message_id))


async def listen(bus, routing_key: str):
    """A private queue on the events exchange, to see what the services publish."""
    queue = await bus.channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(bus.events, routing_key=routing_key)
    return queue


class Seen:
    """Everything a listening queue received so far, kept across polls."""

    def __init__(self, queue) -> None:
        self.queue, self.messages = queue, []

    async def where(self, *, not_id: str | None = None, **fields) -> list[dict]:
        """Bodies whose fields have these values (leaving out the message ``not_id``)."""
        while (msg := await self.queue.get(fail=False, no_ack=True)) is not None:
            self.messages.append((msg.message_id, json.loads(msg.body)))
        return [b for i, b in self.messages if i != not_id and all(b.get(k) == v for k, v in fields.items())]


async def set_prices(bus, **prices: str) -> dict:
    reply = await bus.request(SetPrices(prices=prices))
    assert reply.ok, reply
    return reply.result


async def close_window(bus) -> WindowClosing:
    reply = await bus.request(CloseWindow())
    assert reply.ok, reply
    return WindowClosing.model_validate(reply.result)


@pytest.fixture
async def services(service_factory, bus, settings):
    # Intents other tests published while no window service ran are nobody's to allocate:
    # drop them, and close out any intent left pending in the database, so that this test's
    # windows hold only this test's intents.
    await (await bus.channel.get_queue(topology.WINDOW_INTENTS.name, ensure=False)).purge()
    async with service_factory("market").running() as market, service_factory("window").running() as window, \
            LedgerHolds(bus) as holds:
        await close_window(bus)
        yield market, window, holds
    # No ledger ran: the cash holds these windows asked for (answered by ``holds``) wait in
    # the ledger's queue. They are nobody's: a later test's ledger must not answer them.
    await (await bus.channel.get_queue(topology.LEDGER_COMMANDS.name, ensure=False)).purge()


async def test_a_window_nets_executes_and_allocates_every_intent_exactly_once(services, bus, settings):
    vti_like, bnd_like = new_symbol(), new_symbol()
    assert (await set_prices(bus, **{vti_like: "250.00", bnd_like: "72.50"}))["prices"] == {
        vti_like: "250.00", bnd_like: "72.50"}
    a, b = new_account(), new_account()
    await give_cash(bus, settings, a, "140.00")
    a_buy, a_buy2 = intent(a, vti_like, BUY, "100.00"), intent(a, bnd_like, BUY, "40.00")
    b_sell, b_sell2 = intent(b, vti_like, SELL, "30.00"), intent(b, bnd_like, SELL, "100.00")
    await submit(bus, settings, a, a_buy, a_buy2)
    await submit(bus, settings, b, b_sell, b_sell2)
    allocated = Seen(await listen(bus, "window.fills.#"))
    executed = Seen(await listen(bus, OrdersExecuted.TYPE))

    closing = await close_window(bus)
    assert (closing.intents, closing.accounts) == (4, 2)
    # both have a sell, funded at the last price: each order carries limits 5% either way
    assert closing.orders == [NetOrder(symbol=s, side=d, notional=n, min_price=low, max_price=high)
                              for s, d, n, low, high in sorted([(vti_like, BUY, D("70.00"), D("237.5"), D("262.5")),
                                                                (bnd_like, SELL, D("60.00"), D("68.875"),
                                                                 D("76.125"))])]

    window_id = str(closing.window_id)
    [body] = await eventually(lambda: allocated.where(window_id=window_id))
    event = FillsBatch.model_validate(body)
    assert (event.batch, event.batches) == (0, 1)
    event_fills = event.fill_models()
    fills = {f.intent_id: f for f in event_fills}
    assert (fills[a_buy.intent_id].quantity, fills[a_buy.intent_id].amount) == (D("0.40000"), D("100.00"))
    assert (fills[b_sell.intent_id].quantity, fills[b_sell.intent_id].amount) == (D("0.12000"), D("30.00"))
    assert {f.price for f in event_fills if f.symbol == vti_like} == {D("250.00")}  # one price for everyone
    # 40 / 72.50 = 0.551724... rounded down for the buyer; 100 / 72.50 = 1.379310... up for the seller
    assert (fills[a_buy2.intent_id].quantity, fills[a_buy2.intent_id].price) == (D("0.55172"), D("72.50"))
    assert (fills[b_sell2.intent_id].quantity, fills[b_sell2.intent_id].price) == (D("1.37932"), D("72.50"))
    executions = {e.symbol: e for e in event.executions}
    assert (executions[vti_like].side, executions[vti_like].quantity, executions[vti_like].amount) == (
        BUY, D("0.28000"), D("70.00"))
    assert (executions[bnd_like].side, executions[bnd_like].quantity, executions[bnd_like].amount) == (
        SELL, D("0.82758"), D("60.00"))
    residues = {r.symbol: (r.quantity, r.amount) for r in event.residues}
    assert residues == {vti_like: (D("0"), D("0")), bnd_like: (D("0.00002"), D("0"))}
    ledger_entry(event.executions, event_fills, event.residues)  # the ledger would book it: it balances

    window = (await fetch(settings.database_url, 'SELECT status, summary FROM "window".windows WHERE window_id = $1',
                          closing.window_id))[0]
    summary = json.loads(window["summary"])
    assert window["status"] == "allocated" and summary["intents"] == 4 and summary["accounts"] == 2
    bnd = summary["securities"][bnd_like]
    assert (bnd["gross_buy"], bnd["gross_sell"], bnd["net"], bnd["price"], bnd["residue_quantity"]) == (
        "40.00", "100.00", "-60.00", "72.50", "0.00002")
    unfilled = await fetchval(settings.database_url, 'SELECT count(*) FROM "window".intents i WHERE window_id = $1 '
                              'AND NOT EXISTS (SELECT 1 FROM "window".fills f WHERE f.intent_id = i.intent_id)',
                              closing.window_id)
    assert unfilled == 0

    # The venue's answer again under a new message id, and the window's orders sent to the
    # venue again: nothing changes, nothing is published twice.
    [original] = await eventually(lambda: executed.where(window_id=window_id))
    replay_id = str(uuid.uuid4())
    await bus.publish_json(OrdersExecuted.TYPE, original, message_id=replay_id)
    again = await bus.request(ExecuteOrders(window_id=closing.window_id, orders=closing.orders))
    assert again.ok and again.result["executions"] == original["executions"]
    await handled(settings, replay_id)
    await eventually(lambda: fetchval(settings.database_url, 'SELECT count(*) = 0 FROM "window".outbox'))
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) = 0 FROM market.outbox"))
    assert await fetchval(settings.database_url, 'SELECT count(*) FROM "window".fills WHERE window_id = $1',
                          closing.window_id) == 4
    assert await fetchval(settings.database_url, "SELECT count(*) FROM market.executions WHERE window_id = $1",
                          closing.window_id) == 2
    assert len(await allocated.where(window_id=window_id)) == 1
    assert len(await executed.where(window_id=window_id, not_id=replay_id)) == 1


async def test_set_prices_changes_the_execution_price(services, bus, settings):
    symbol, account = new_symbol(), new_account()
    await give_cash(bus, settings, account, "100.00")
    assert (await set_prices(bus, **{symbol: "10.00"}))["prices"] == {symbol: "10.00"}
    assert (await set_prices(bus, **{symbol: "10.00"}))["prices"] == {}  # nothing changed
    allocated = Seen(await listen(bus, "window.fills.#"))

    async def fill_at_the_next_window() -> tuple[Decimal, Decimal]:
        await submit(bus, settings, account, intent(account, symbol, BUY, "25.00"))
        closing = await close_window(bus)
        [body] = await eventually(lambda: allocated.where(window_id=str(closing.window_id)))
        [fill] = FillsBatch.model_validate(body).fill_models()
        return fill.price, fill.quantity

    assert await fill_at_the_next_window() == (D("10.00"), D("2.50000"))
    await set_prices(bus, **{symbol: "12.50"})
    assert await fill_at_the_next_window() == (D("12.50"), D("2.00000"))


async def test_closing_a_window_with_nothing_pending_creates_nothing(services, bus, settings):
    before = await fetchval(settings.database_url, 'SELECT count(*) FROM "window".windows')
    closing = await close_window(bus)
    assert (closing.window_id, closing.intents, closing.accounts, closing.orders) == (None, 0, 0, [])
    assert await fetchval(settings.database_url, 'SELECT count(*) FROM "window".windows') == before


async def test_malformed_orders_are_dead_lettered_with_the_reason(services, bus, settings):
    symbol, message_id = new_symbol(), str(uuid.uuid4())
    twice = [NetOrder(symbol=symbol, side=BUY, notional="10.00"), NetOrder(symbol=symbol, side=BUY, notional="5.00")]
    command = ExecuteOrders(window_id=uuid.uuid4(), orders=twice)
    reply = await bus.request(command, message_id=message_id)
    assert not reply.ok and f"{symbol} is ordered 2 times" in reply.reason
    reason = await fetchval(settings.database_url, "SELECT reason FROM market.dead_letters WHERE message_id = $1",
                            message_id)
    assert f"{symbol} is ordered 2 times" in reason
    [copy] = await eventually(lambda: dead_lettered(settings, topology.MARKET_COMMANDS.dlq, message_id))
    assert f"{symbol} is ordered 2 times" in copy.headers["x-reason"]
    assert await fetchval(settings.database_url, "SELECT count(*) FROM market.executions WHERE window_id = $1",
                          command.window_id) == 0


async def test_a_security_the_venue_does_not_list_is_refused_alone_and_its_intents_rejected(
        services, bus, settings):
    """One unknown security does not stop the window: its intents are rejected with the
    venue's reason, the buy its sale was to pay for is funded again without it, the rest
    trades."""
    unknown, listed = new_symbol(), new_symbol()
    await set_prices(bus, **{listed: "10.00"})
    account = new_account()
    await give_cash(bus, settings, account, "5.00")
    sale, buy = intent(account, unknown, SELL, "20.00"), intent(account, listed, BUY, "25.00")
    await submit(bus, settings, account, sale, buy)
    rejected = Seen(await listen(bus, IntentsRejected.TYPE))
    closing = await close_window(bus)
    [body] = await eventually(lambda: rejected.where(account_id=account))
    assert body["reasons"] == {str(sale.intent_id): f"unknown symbol {unknown}"}
    await eventually(lambda: fetchval(settings.database_url, 'SELECT status = \'allocated\' FROM "window".windows '
                                                             "WHERE window_id = $1", closing.window_id))
    assert await fetchval(settings.database_url, 'SELECT amount FROM "window".fills WHERE intent_id = $1',
                          buy.intent_id) == D("5.00")  # its own cash only
    summary = json.loads(await fetchval(settings.database_url,
                                        'SELECT summary FROM "window".windows WHERE window_id = $1', closing.window_id))
    assert summary["refused"] == {unknown: f"unknown symbol {unknown}"}


async def test_a_delisted_security_is_announced_and_refused_until_it_is_listed_again(services, bus, settings):
    symbol, account = new_symbol(), new_account()
    await set_prices(bus, **{symbol: "10.00"})
    await give_cash(bus, settings, account, "100.00")
    announced = Seen(await listen(bus, SecurityStatusChanged.TYPE))
    prices = Seen(await listen(bus, PricesChanged.TYPE))
    reply = await bus.request(SetSecurityActive(symbol=symbol, active=False, reason="acquired for cash"))
    assert reply.ok and (reply.result["active"], reply.result["price"]) == (False, "10.00")
    assert (await bus.request(SetSecurityActive(symbol=symbol, active=False))).ok  # already delisted: no event
    [event] = await eventually(lambda: announced.where(symbol=symbol))
    assert (event["active"], event["reason"]) == (False, "acquired for cash")
    reply = await bus.request(SetSecurityActive(symbol="ZNOSUCH", active=False))
    assert not reply.ok and "unknown symbol ZNOSUCH" in reply.reason

    # its intents are rejected by the venue; its price is no longer published
    rejected = Seen(await listen(bus, IntentsRejected.TYPE))
    buy = intent(account, symbol, BUY, "25.00")
    await submit(bus, settings, account, buy)
    await close_window(bus)
    [body] = await eventually(lambda: rejected.where(account_id=account))
    assert body["reasons"] == {str(buy.intent_id): f"{symbol} is inactive and cannot be traded"}
    assert (await set_prices(bus, **{symbol: "11.00"}))["prices"] == {}

    # listed again: announced with its price, which is published again, and it trades
    assert (await bus.request(SetSecurityActive(symbol=symbol, active=True))).ok
    await eventually(lambda: announced.where(symbol=symbol, active=True))
    assert await eventually(lambda: prices.where(prices={symbol: "11.00"}))
    allocated = Seen(await listen(bus, "window.fills.#"))
    await submit(bus, settings, account, intent(account, symbol, BUY, "22.00"))
    closing = await close_window(bus)
    [fills] = await eventually(lambda: allocated.where(window_id=str(closing.window_id)))
    assert [(f.symbol, f.quantity) for f in FillsBatch.model_validate(fills).fill_models()] == [(symbol, D("2.00000"))]
    assert len(announced.messages) == 2


async def dead_lettered(settings, dlq: str, message_id: str) -> list:
    return [m for m in await dlq_messages(settings.rabbitmq_url, dlq) if m.message_id == message_id]


async def give_shares(bus, settings, account: str, symbol: str, quantity: str, version: int = 1) -> None:
    """What the ledger would report: the account's position, for limiting its sells."""
    event = PositionChanged(account_id=account, symbol=symbol, quantity=quantity, delta=quantity, version=version)
    message_id = str(uuid.uuid4())
    await bus.publish_json(PositionChanged.TYPE, event.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)


def by_shares(account: str, symbol: str, side: Side, quantity: str) -> Intent:
    return Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, quantity=quantity,
                  source=IntentSource.ORDER)


async def test_share_quantity_intents_trade_at_the_window_price_and_sells_stop_at_the_holding(
        services, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "10.00"})
    seller, buyer, dollars = new_account(), new_account(), new_account()
    await give_shares(bus, settings, seller, symbol, "3")
    await give_cash(bus, settings, buyer, "100.00")
    await give_cash(bus, settings, dollars, "20.00")
    sell_all, buy = by_shares(seller, symbol, SELL, "5"), by_shares(buyer, symbol, BUY, "1.5")
    await submit(bus, settings, seller, sell_all)
    await submit(bus, settings, buyer, buy)
    await submit(bus, settings, dollars, dollar_buy := intent(dollars, symbol, BUY, "20.00"))
    allocated = Seen(await listen(bus, "window.fills.#"))

    closing = await close_window(bus)
    # $20 buys 2 shares; 1.5 bought and 3 (all that is held, not 5) sold by quantity
    assert closing.orders == [NetOrder(symbol=symbol, side=BUY, notional=D("20.00"), shares=D("-1.5"),
                                       min_price=D("9.5"), max_price=D("10.5"))]
    [body] = await eventually(lambda: allocated.where(window_id=str(closing.window_id)))
    # Before it traded, the window had the ledger hold what the buys take from each account's
    # cash: share buys at the last price plus the margin (1.5 * 10.00 * 1.05); the seller's
    # sale pays for itself.
    assert services[2].asked[str(closing.window_id)] == {buyer: "15.75", dollars: "20.00"}
    event = FillsBatch.model_validate(body)
    event_fills = event.fill_models()
    fills = {f.intent_id: (f.quantity, f.amount) for f in event_fills}
    assert fills == {sell_all.intent_id: (D("3"), D("30.00")), buy.intent_id: (D("1.5"), D("15.00")),
                     dollar_buy.intent_id: (D("2"), D("20.00"))}
    [execution] = event.executions
    assert (execution.side, execution.quantity, execution.amount) == (BUY, D("0.5"), D("5.00"))
    ledger_entry(event.executions, event_fills, event.residues)


async def test_a_share_sell_of_an_account_holding_nothing_is_rejected_with_the_reason(services, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "10.00"})
    account = new_account()
    await give_shares(bus, settings, account, symbol, "0")
    await submit(bus, settings, account, sell := by_shares(account, symbol, SELL, "1"))
    rejected = Seen(await listen(bus, IntentsRejected.TYPE))
    await close_window(bus)
    [body] = await eventually(lambda: rejected.where(account_id=account))
    assert body["reasons"] == {str(sell.intent_id): domain.NOT_HELD}


async def test_an_intent_id_reused_for_a_different_intent_is_refused(services, bus, settings):
    account, symbol = new_account(), new_symbol()
    first = intent(account, symbol, BUY, "10.00")
    await submit(bus, settings, account, first)
    await submit(bus, settings, account, first)  # the same batch content again: accepted, stored once
    changed = first.model_copy(update={"amount": D("11.00")})
    message_id = str(uuid.uuid4())
    await bus.publish_json(IntentsSubmitted.TYPE, IntentsSubmitted(account_id=account, batch_id=uuid.uuid4(),
                                                                   intents=[changed]).model_dump(mode="json"),
                           message_id=message_id)
    reason = await eventually(lambda: fetchval(
        settings.database_url, 'SELECT reason FROM "window".dead_letters WHERE message_id = $1', message_id))
    assert str(first.intent_id) in reason
    rows = await fetch(settings.database_url, 'SELECT amount FROM "window".intents WHERE intent_id = $1',
                       first.intent_id)
    assert [r["amount"] for r in rows] == [D("10.00")]
    await set_prices(bus, **{symbol: "5.00"})  # leave nothing the next window could not execute


async def test_the_market_publishes_every_active_price_when_it_starts(service_factory, bus):
    prices = Seen(await listen(bus, PricesChanged.TYPE))
    async with service_factory("market").running():
        snapshot = await eventually(lambda: prices.where())
    listed = PricesChanged.model_validate(snapshot[0]).prices
    assert {"VTI", "BND", "VXUS", "VOO"} <= set(listed) and all(p > 0 for p in listed.values())


async def test_cash_spent_by_a_window_the_ledger_has_not_booked_yet_is_not_spent_again(services, bus, settings):
    symbol, account = new_symbol(), new_account()
    await set_prices(bus, **{symbol: "10.00"})
    await give_cash(bus, settings, account, "100.00")
    await submit(bus, settings, account, intent(account, symbol, BUY, "80.00"))
    first = await close_window(bus)
    await eventually(lambda: fetchval(settings.database_url, 'SELECT status = \'allocated\' FROM "window".windows '
                                                             "WHERE window_id = $1", first.window_id))
    # No ledger runs here: the first window's $80 is not booked, the projection still says $100.
    await submit(bus, settings, account, second := intent(account, symbol, BUY, "80.00"))
    await close_window(bus)
    assert await fetchval(settings.database_url, 'SELECT funded_amount FROM "window".intents WHERE intent_id = $1',
                          second.intent_id) == D("20.00")
    # The ledger books the first window: cash $20 (and the second window's $20 still held).
    booked = FillsBooked(window_id=first.window_id, batch=0, booked_at="2026-11-25T15:00:00Z", accounts=[
        AccountFills(account_id=account, window_id=first.window_id, fills=[], cash="20.00", positions={symbol: "8"},
                     version=2, booked_at="2026-11-25T15:00:00Z")])
    message_id = str(uuid.uuid4())
    await bus.publish_json(FillsBooked.TYPE, booked.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)
    await submit(bus, settings, account, third := intent(account, symbol, BUY, "5.00"))
    rejected = Seen(await listen(bus, IntentsRejected.TYPE))
    await close_window(bus)
    [body] = await eventually(lambda: rejected.where(account_id=account))
    assert body["reasons"] == {str(third.intent_id): domain.UNDER_MINIMUM}


async def test_shares_sold_by_a_window_the_ledger_has_not_booked_yet_are_not_sold_again(services, bus, settings):
    symbol, account = new_symbol(), new_account()
    await set_prices(bus, **{symbol: "10.00"})
    await give_shares(bus, settings, account, symbol, "10")

    async def allocated(intent: Intent) -> tuple:
        closing = await close_window(bus)
        await eventually(lambda: fetchval(settings.database_url, 'SELECT status = \'allocated\' FROM "window".windows '
                                                                 "WHERE window_id = $1", closing.window_id))
        row = await fetch(settings.database_url, 'SELECT held, funded_quantity FROM "window".intents '
                                                 "WHERE intent_id = $1", intent.intent_id)
        return closing.window_id, (row[0]["held"], row[0]["funded_quantity"])

    await submit(bus, settings, account, first := by_shares(account, symbol, SELL, "4"))
    first_window, _ = await allocated(first)
    # No ledger runs here: the projection still says 10 shares, of which the first window sold 4.
    await submit(bus, settings, account, second := by_shares(account, symbol, SELL, "4"))
    assert (await allocated(second))[1] == (D("6"), D("4"))
    # The ledger books the first window: 6 shares; the second window's 4 are still not booked.
    booked = FillsBooked(window_id=first_window, batch=0, booked_at="2026-11-25T15:00:00Z", accounts=[
        AccountFills(account_id=account, window_id=first_window, fills=[], cash="40.00", positions={symbol: "6"},
                     version=2, booked_at="2026-11-25T15:00:00Z")])
    message_id = str(uuid.uuid4())
    await bus.publish_json(FillsBooked.TYPE, booked.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)
    await submit(bus, settings, account, third := by_shares(account, symbol, SELL, "4"))
    assert (await allocated(third))[1] == (D("2"), D("2"))


async def test_a_loan_the_ledger_reports_is_projected_with_its_cash(services, bus, settings):
    account = new_account()
    drawn = LoanChanged(account_id=account, loan="1000.00", delta="1000.00", cash="1500.00", cause="loan",
                        cause_id=str(uuid.uuid4()), version=3, booked_at="2026-11-25T15:00:00Z")
    message_id = str(uuid.uuid4())
    await bus.publish_json(LoanChanged.TYPE, drawn.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)
    row = await fetch(settings.database_url, 'SELECT l.loan, c.cash FROM "window".loans l '
                                             'JOIN "window".cash c USING (account_id) WHERE account_id = $1', account)
    assert (row[0]["loan"], row[0]["cash"]) == (D("1000.00"), D("1500.00"))


async def test_booked_fills_set_the_windows_cash_and_positions_newest_version_first(services, bus, settings):
    a, b, account = new_symbol(), new_symbol(), new_account()
    await set_prices(bus, **{a: "10.00", b: "10.00"})
    await give_cash(bus, settings, account, "100.00")
    await submit(bus, settings, account, intent(account, a, BUY, "50.00"))
    closing = await close_window(bus)
    await eventually(lambda: fetchval(settings.database_url, 'SELECT status = \'allocated\' FROM "window".windows '
                                                             "WHERE window_id = $1", closing.window_id))

    async def booked(version: int, cash: str, positions: dict[str, str]) -> None:
        event = FillsBooked(window_id=closing.window_id, batch=0, booked_at="2026-11-25T15:00:00Z", accounts=[
            AccountFills(account_id=account, window_id=closing.window_id, fills=[], cash=cash, positions=positions,
                         version=version, booked_at="2026-11-25T15:00:00Z")])
        message_id = str(uuid.uuid4())
        await bus.publish_json(FillsBooked.TYPE, event.model_dump(mode="json"), message_id=message_id)
        await handled(settings, message_id)

    async def projection() -> tuple:
        cash = await fetchval(settings.database_url, 'SELECT cash FROM "window".cash WHERE account_id = $1', account)
        rows = await fetch(settings.database_url, 'SELECT symbol, quantity FROM "window".positions '
                                                  "WHERE account_id = $1 ORDER BY symbol", account)
        held = await fetchval(settings.database_url, 'SELECT count(*) FROM "window".reservations '
                                                     "WHERE account_id = $1", account)
        return cash, {r["symbol"]: r["quantity"] for r in rows}, held

    assert (await projection())[2] == 1  # the buy's cash is held until the ledger books it
    await booked(2, "50.00", {a: "5", b: "3"})
    assert await projection() == (D("50.00"), {a: D("5"), b: D("3")}, 0)
    # A later version no longer holds b: it goes to zero.
    await booked(3, "12.00", {a: "8"})
    assert await projection() == (D("12.00"), {a: D("8"), b: D("0")}, 0)
    # An older version arriving late changes nothing, nor adds a symbol the newer list left out.
    c = new_symbol()
    await booked(2, "99.00", {a: "1", b: "9", c: "4"})
    assert await projection() == (D("12.00"), {a: D("8"), b: D("0")}, 0)
    # A cash report newer than every list: a list older than it still moves the positions, not the cash.
    await give_cash(bus, settings, account, "30.00", version=9)
    await booked(4, "5.00", {a: "8", c: "2"})
    assert await projection() == (D("30.00"), {a: D("8"), b: D("0"), c: D("2")}, 0)


async def windows(bus, *, unfinished: bool) -> dict[str, dict]:
    reply = await bus.request(ListWindows(unfinished=unfinished, limit=500))
    assert reply.ok, reply
    return {w["window_id"]: w for w in reply.result["windows"]}


def overdue_gauge(status: str) -> float:
    return REGISTRY.get_sample_value("m1_windows_overdue", {"status": status}) or 0.0


async def test_a_window_waiting_for_the_ledger_is_listed_unfinished_and_reported_overdue(services, bus, settings,
                                                                                          caplog):
    _, window, _ = services
    symbol, account = new_symbol(), new_account()
    await set_prices(bus, **{symbol: "10.00"})
    await give_cash(bus, settings, account, "100.00")
    await submit(bus, settings, account, intent(account, symbol, BUY, "80.00"))
    closing = await close_window(bus)
    wid = str(closing.window_id)
    await eventually(lambda: fetchval(settings.database_url, 'SELECT status = \'allocated\' FROM "window".windows '
                                                             "WHERE window_id = $1", closing.window_id))
    # No ledger runs here: the window's one fills batch waits in the ledger's queue.
    waiting = (await windows(bus, unfinished=True))[wid]
    assert (waiting["status"], waiting["batches"], waiting["booked_batches"]) == ("allocated", 1, 0)
    assert waiting["waiting_for"] == "the ledger to book its fills: 0 of 1 batches booked (window.fills.batch)"

    # Not overdue until M1_WINDOW_OVERDUE_SECONDS have passed since it closed; then it is
    # logged with what it waits for, and counted in the gauge.
    assert wid not in {str(w.window_id) for w in await watch_overdue(window)}
    closed_at = await fetchval(settings.database_url, 'SELECT closed_at FROM "window".windows WHERE window_id = $1',
                               closing.window_id)
    window.clock.set(closed_at + timedelta(seconds=settings.window_overdue_seconds + 60))
    with caplog.at_level(logging.WARNING, logger=window.log.name):
        late = {str(w.window_id): w for w in await watch_overdue(window)}
    assert late[wid].waiting_for == waiting["waiting_for"]
    [line] = [r for r in caplog.records if r.getMessage() == "window overdue" and r.window_id == wid]
    assert (line.status, line.minutes) == ("allocated", int(settings.window_overdue_seconds // 60) + 1)
    assert overdue_gauge("allocated") == sum(1 for w in late.values() if w.status == "allocated") >= 1

    # The ledger books the batch (twice: a replay under another message id counts once).
    booked = FillsBooked(window_id=closing.window_id, batch=0, booked_at="2026-11-25T15:00:00Z", accounts=[
        AccountFills(account_id=account, window_id=closing.window_id, fills=[], cash="20.00",
                     positions={symbol: "8"}, version=2, booked_at="2026-11-25T15:00:00Z")])
    for _ in range(2):
        message_id = str(uuid.uuid4())
        await bus.publish_json(FillsBooked.TYPE, booked.model_dump(mode="json"), message_id=message_id)
        await handled(settings, message_id)
    assert wid not in await windows(bus, unfinished=True)
    done = (await windows(bus, unfinished=False))[wid]
    assert (done["status"], done["batches"], done["booked_batches"], done["waiting_for"]) == ("allocated", 1, 1, None)
    before = overdue_gauge("allocated")
    assert wid not in {str(w.window_id) for w in await watch_overdue(window)}
    assert overdue_gauge("allocated") == before - 1


async def test_fills_booked_for_a_window_the_service_never_ran_are_dead_lettered(services, bus, settings):
    account, symbol, unknown = new_account(), new_symbol(), uuid.uuid4()
    booked = FillsBooked(window_id=unknown, batch=0, booked_at="2026-11-25T15:00:00Z", accounts=[
        AccountFills(account_id=account, window_id=unknown, fills=[], cash="20.00", positions={symbol: "8"},
                     version=2, booked_at="2026-11-25T15:00:00Z")])
    message_id = str(uuid.uuid4())
    await bus.publish_json(FillsBooked.TYPE, booked.model_dump(mode="json"), message_id=message_id)
    [copy] = await eventually(lambda: dead_lettered(settings, topology.WINDOW_LEDGER.dlq, message_id))
    assert copy.headers["x-reason"] == f"fills booked for unknown window {unknown}"
    assert await fetchval(settings.database_url, 'SELECT count(*) FROM "window".cash WHERE account_id = $1',
                          account) == 0  # nothing of it applied
