"""The window with the ledger and the market: funding by the ledger's cash, priority
scaling, batched booking, cancel, replay, and every scenario reconciled with the ledger.
Also the set-based SQL against the pure reference on random windows."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from decimal import Decimal

import asyncpg
import pytest

from services.ledger.domain import clearing_book
from services.market.domain import fill as market_fill
from services.window import domain, store
from shared import topology
from shared.contracts import (
    CancelIntents,
    GetWindow,
    HoldWindowCash,
    Intent,
    IntentsSubmitted,
    IntentSource,
    OpenAccount,
    Side,
)
from tests.conftest import make_service
from tests.integration.test_window_market import close_window, handled, new_account, new_symbol, set_prices
from tests.support import eventually, fetch, fetchval

pytestmark = pytest.mark.integration

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture
async def system(service_factory, bus, settings):
    await (await bus.channel.get_queue(topology.WINDOW_INTENTS.name, ensure=False)).purge()
    window_settings = settings.model_copy(update={"window_fill_batch_accounts": 2})
    async with service_factory("ledger").running(), service_factory("market").running(), \
            make_service("window", window_settings).running():
        await close_window(bus)
        yield


async def open_funded(bus, settings, amount: str) -> str:
    account = new_account()
    assert (await bus.request(OpenAccount(account_id=account))).ok
    deposit_id = str(uuid.uuid4())
    await bus.publish_json("funding.deposit.received", {
        "deposit_id": deposit_id, "account_id": account, "amount": amount, "currency": "USD",
        "received_at": "2026-11-25T14:00:00+00:00"}, message_id=deposit_id)
    await eventually(lambda: fetchval(settings.database_url, 'SELECT cash = $2 FROM "window".cash WHERE account_id = $1',
                                      account, D(amount)))
    return account


def intent(account: str, symbol: str, side: Side, amount: str, source=IntentSource.AUTO_INVEST) -> Intent:
    return Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, amount=amount, source=source)


async def submit(bus, settings, *intents: Intent) -> IntentsSubmitted:
    batch = IntentsSubmitted(account_id=intents[0].account_id, batch_id=uuid.uuid4(), intents=list(intents))
    message_id = str(uuid.uuid4())
    await bus.publish_json(IntentsSubmitted.TYPE, batch.model_dump(mode="json"), message_id=message_id)
    await handled(settings, message_id)
    return batch


async def booked(settings, window_id) -> None:
    """Wait until the ledger booked every batch of the window."""
    batches = await eventually(lambda: fetchval(
        settings.database_url, 'SELECT batches FROM "window".windows WHERE window_id = $1 AND status = $2',
        window_id, "allocated"))
    await eventually(lambda: fetchval(
        settings.database_url, "SELECT count(*) = $2 FROM ledger.entries WHERE kind = 'fill' AND reference LIKE $1",
        f"{window_id}:%", batches))


async def reconcile(settings, window_id) -> None:
    """The window's fills and residues are exactly what the ledger booked for it, and the
    window's clearing book is zero."""
    url = settings.database_url
    window = await fetch(url, """SELECT account_id, symbol, sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END) q,
                                        sum(CASE side WHEN 'buy' THEN -amount ELSE amount END) c
                                 FROM "window".fills WHERE window_id = $1 GROUP BY account_id, symbol""", window_id)
    ledger = await fetch(url, """SELECT p.book, p.asset, sum(p.amount) AS amount FROM ledger.postings p
                                 JOIN ledger.entries e USING (entry_id)
                                 WHERE e.kind = 'fill' AND e.reference LIKE $1 GROUP BY p.book, p.asset""",
                         f"{window_id}:%")
    booked_ = {(r["book"], r["asset"]): r["amount"] for r in ledger}
    shares, cash = {}, {}
    for r in window:
        shares[(f"customer:{r['account_id']}:securities", r["symbol"])] = r["q"]
        cash[r["account_id"]] = cash.get(r["account_id"], D(0)) + r["c"]
    for key, q in shares.items():
        assert booked_.get(key, D(0)) == q, key
    for account, c in cash.items():
        assert booked_.get((f"customer:{account}:cash", "USD"), D(0)) == c, account
    residues = await fetch(url, 'SELECT symbol, quantity, amount FROM "window".residues WHERE window_id = $1', window_id)
    assert sum((r["amount"] for r in residues), D(0)) == booked_.get(("firm:residue", "USD"), D(0))
    for r in residues:
        assert booked_.get(("firm:residue", r["symbol"]), D(0)) == r["quantity"]
    assert all(v == 0 for (book, _), v in booked_.items() if book == clearing_book(window_id))
    assert await fetchval(url, "SELECT count(*) FROM ledger.window_holds WHERE window_id = $1", window_id) == 0
    # The window hears of every batch the ledger booked: it is no longer listed unfinished.
    await eventually(lambda: fetchval(url, 'SELECT w.batches = (SELECT count(*) FROM "window".booked_batches b '
                                           'WHERE b.window_id = w.window_id) FROM "window".windows w '
                                           "WHERE w.window_id = $1", window_id))
    assert await fetchval(url, "SELECT count(*) FROM (SELECT asset FROM ledger.postings GROUP BY asset "
                               "HAVING sum(amount) <> 0) t") == 0


async def test_a_window_books_in_batches_that_reconcile_with_the_ledger(system, bus, settings):
    symbol, other = new_symbol(), new_symbol()
    await set_prices(bus, **{symbol: "72.50", other: "13.37"})
    accounts = [await open_funded(bus, settings, "500.00") for _ in range(5)]
    for n, account in enumerate(accounts):
        await submit(bus, settings, intent(account, symbol, BUY, f"{40 + n}.11"), intent(account, other, BUY, "9.99"))
    closing = await close_window(bus)
    assert closing.accounts == 5
    await booked(settings, closing.window_id)
    assert await fetchval(settings.database_url, 'SELECT batches FROM "window".windows WHERE window_id = $1',
                          closing.window_id) == 3  # 5 accounts, 2 per batch
    await reconcile(settings, closing.window_id)
    # The second round sells part of it back: proceeds are booked, the books still reconcile.
    for account in accounts:
        await submit(bus, settings, intent(account, symbol, SELL, "10.00"))
    closing = await close_window(bus)
    await booked(settings, closing.window_id)
    await reconcile(settings, closing.window_id)


async def test_orders_are_funded_before_automated_trades_when_cash_is_short(system, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "10.00"})
    account = await open_funded(bus, settings, "50.00")
    order = intent(account, symbol, BUY, "40.00", IntentSource.ORDER)
    auto = intent(account, symbol, BUY, "30.00")
    tiny = intent(account, symbol, BUY, "2.00", IntentSource.REBALANCE)
    await submit(bus, settings, auto, tiny, order)
    closing = await close_window(bus)
    await booked(settings, closing.window_id)
    rows = await fetch(settings.database_url, 'SELECT intent_id, status, funded_amount, reason FROM "window".intents '
                                              "WHERE account_id = $1", account)
    by_id = {r["intent_id"]: r for r in rows}
    assert by_id[order.intent_id]["funded_amount"] == D("40.00")  # the order first, in full
    # $10 left for $32 of automated buys: 30 * 10 / 32 = 9.375 -> 9.37; 2 * 10 / 32 = 0.625 -> under $1
    assert by_id[auto.intent_id]["funded_amount"] == D("9.37")
    assert (by_id[tiny.intent_id]["status"], by_id[tiny.intent_id]["reason"]) == ("rejected", domain.UNDER_MINIMUM)
    balances = await fetch(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = $1",
                           f"customer:{account}:cash")
    assert balances[0]["amount"] == D("0.63")  # never below zero
    await reconcile(settings, closing.window_id)
    view = await bus.request(GetWindow(window_id=closing.window_id))
    assert view.ok and view.result["summary"]["rejected"] == 1


async def ledger_cash(settings, account: str) -> Decimal:
    return await fetchval(settings.database_url, "SELECT amount FROM ledger.balances WHERE book = $1",
                          f"customer:{account}:cash")


async def test_cash_the_window_counted_but_the_ledger_no_longer_has_is_not_spent(system, bus, settings):
    """The window's view of an account's cash lags the ledger (a withdrawal's event still on
    its way, played here by setting the view back): the ledger, asked to hold the cash, says
    what the account has, and the window funds its buys again from that before it trades."""
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "10.00"})
    account = await open_funded(bus, settings, "100.00")
    withdrawal = {"withdrawal_id": str(uuid.uuid4()), "account_id": account, "amount": "60.00", "currency": "USD",
                  "requested_at": "2026-11-25T15:00:00+00:00"}
    await bus.publish_json("funding.withdrawal.requested", withdrawal, message_id=withdrawal["withdrawal_id"])
    await eventually(lambda: fetchval(settings.database_url, 'SELECT cash = 40 FROM "window".cash WHERE account_id = $1',
                                      account))
    await fetchval(settings.database_url, 'UPDATE "window".cash SET cash = 100 WHERE account_id = $1', account)
    order = intent(account, symbol, BUY, "50.00", IntentSource.ORDER)
    auto = intent(account, symbol, BUY, "30.00")
    await submit(bus, settings, order, auto)
    closing = await close_window(bus)
    assert [(o.symbol, o.notional) for o in closing.orders] == [(symbol, D("80.00"))]  # as the window counted
    await booked(settings, closing.window_id)
    rows = await fetch(settings.database_url, 'SELECT intent_id, status, funded_amount, reason FROM "window".intents '
                                              "WHERE account_id = $1", account)
    by_id = {r["intent_id"]: r for r in rows}
    assert by_id[order.intent_id]["funded_amount"] == D("40.00")  # the $40 the ledger has, to the order first
    assert (by_id[auto.intent_id]["status"], by_id[auto.intent_id]["reason"]) == ("rejected", domain.LEDGER_SHORT)
    [order_sent] = await fetch(settings.database_url, 'SELECT notional FROM "window".orders WHERE window_id = $1',
                               closing.window_id)
    assert order_sent["notional"] == D("40.00")
    assert await ledger_cash(settings, account) == D("0.00")  # never below zero
    await reconcile(settings, closing.window_id)
    # A stray copy of the window's hold after its fills were booked holds nothing (no batch
    # would ever release it).
    stray = str(uuid.uuid4())
    await bus.publish_raw(HoldWindowCash.TYPE, HoldWindowCash(window_id=closing.window_id, holds=[(account, "1.00")])
                          .model_dump_json().encode(), message_id=stray, exchange="m1.commands")
    await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) FROM ledger.inbox WHERE message_id = $1",
                                      stray))
    assert await fetchval(settings.database_url, "SELECT count(*) FROM ledger.window_holds WHERE account_id = $1",
                          account) == 0


@pytest.fixture
async def no_market(service_factory, bus, settings):
    """The ledger and the window, the venue down until a test starts it."""
    await (await bus.channel.get_queue(topology.WINDOW_INTENTS.name, ensure=False)).purge()
    async with service_factory("ledger").running(), service_factory("window").running():
        await close_window(bus)
        yield


async def test_a_withdrawal_while_a_window_trades_cannot_take_the_cash_its_buys_hold(no_market, service_factory,
                                                                                     bus, settings):
    """Between a window's freeze and the booking of its fills, the ledger holds the cash its
    buys take: a withdrawal gets only the rest, and the one that would need the held cash
    waits (the pie is asked to sell for it) instead of leaving the account below zero."""
    symbol = new_symbol()
    async with service_factory("market").running():
        await set_prices(bus, **{symbol: "10.00"})
    account = await open_funded(bus, settings, "150.00")
    await submit(bus, settings, intent(account, symbol, BUY, "100.00"))
    closing = await close_window(bus)  # the orders wait at the venue, which is down
    url = settings.database_url
    assert await eventually(lambda: fetchval(url, "SELECT amount FROM ledger.window_holds WHERE window_id = $1 "
                                                  "AND account_id = $2", closing.window_id, account)) == D("100.00")
    paid, waits = ({"withdrawal_id": str(uuid.uuid4()), "account_id": account, "amount": amount, "currency": "USD",
                    "requested_at": "2026-11-25T15:00:00+00:00"} for amount in ("50.00", "10.00"))
    for body in (paid, waits):  # one after the other
        await bus.publish_json("funding.withdrawal.requested", body, message_id=body["withdrawal_id"])
        await eventually(lambda: fetchval(url, "SELECT count(*) FROM ledger.inbox WHERE message_id = $1",
                                          body["withdrawal_id"]))
    assert await ledger_cash(settings, account) == D("100.00")  # the $50 left the account
    status = "SELECT status FROM ledger.pending_withdrawals WHERE withdrawal_id = $1"
    assert await fetchval(url, status, uuid.UUID(waits["withdrawal_id"])) == "pending"

    async with service_factory("market").running():
        await booked(settings, closing.window_id)
    assert await ledger_cash(settings, account) == D("0.00")  # the buy spent what was held; never below zero
    assert await fetchval(url, status, uuid.UUID(waits["withdrawal_id"])) == "pending"  # nothing left to pay it
    await reconcile(settings, closing.window_id)


async def test_pending_intents_can_be_cancelled_until_their_window_starts(system, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "10.00"})
    account = await open_funded(bus, settings, "100.00")
    first, second = intent(account, symbol, BUY, "10.00"), intent(account, symbol, BUY, "20.00")
    batch = await submit(bus, settings, first)
    reply = await bus.request(CancelIntents(batch_id=batch.batch_id))
    assert reply.ok and reply.result["cancelled"] == [str(first.intent_id)]
    await submit(bus, settings, second)
    closing = await close_window(bus)
    reply = await bus.request(CancelIntents(intent_ids=[second.intent_id, first.intent_id]))
    assert reply.ok and reply.result["cancelled"] == []
    assert "has started" in reply.result["refused"][str(second.intent_id)]
    assert reply.result["refused"][str(first.intent_id)] == "already cancelled"
    await booked(settings, closing.window_id)
    await reconcile(settings, closing.window_id)


async def test_replaying_a_closed_windows_allocation_reproduces_its_fills(system, bus, settings):
    symbol = new_symbol()
    await set_prices(bus, **{symbol: "33.333333"})
    accounts = [await open_funded(bus, settings, "100.00") for _ in range(3)]
    await submit(bus, settings, intent(accounts[0], symbol, BUY, "77.77"))
    await submit(bus, settings, intent(accounts[1], symbol, BUY, "1.01"))
    await submit(bus, settings, intent(accounts[2], symbol, BUY, "50.00"))
    closing = await close_window(bus)
    await booked(settings, closing.window_id)
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": '"window"'})
    try:
        stored = await store.fills_of(conn, closing.window_id)
        assert await store.replay_allocation(conn, closing.window_id) == stored
        intents = await store.intents_of(conn, closing.window_id)
        executions = await store.executions_of(conn, closing.window_id)
        reference = domain.allocate(intents, executions)
        assert sorted(reference.fills, key=lambda f: str(f.intent_id)) == stored
        assert reference.residues == await store.residues_of(conn, closing.window_id)
    finally:
        await conn.close()
    await reconcile(settings, closing.window_id)


async def test_the_set_based_close_agrees_with_the_reference_on_random_windows(system, settings):
    """Funding, netting and allocation in SQL equal services/window/domain.py, exactly."""
    rng = random.Random(4)
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": '"window"'})
    try:
        for _ in range(80):
            tr = conn.transaction()
            await tr.start()
            try:
                await check_random_window(conn, rng)
            finally:
                await tr.rollback()
    finally:
        await conn.close()


async def assert_funded_as(conn, window_id, funding: domain.Funding) -> None:
    """The window's frozen intents carry exactly the reference funding's amounts and shares."""
    rows = await conn.fetch("SELECT intent_id, funded_amount, funded_quantity FROM intents "
                            "WHERE window_id = $1 AND status = 'frozen'", window_id)
    assert {r["intent_id"]: r["funded_amount"] for r in rows if r["funded_amount"] is not None} == funding.funded
    assert {r["intent_id"]: r["funded_quantity"] for r in rows if r["funded_quantity"] is not None} == funding.shares


async def check_random_window(conn, rng: random.Random) -> None:
    symbols = [f"R{n}" for n in range(rng.randint(1, 4))]
    accounts = [f"r-{n}" for n in range(rng.randint(1, 6))]
    prices = {s: D(rng.randint(1, 500_000_000)) / D(1_000_000) for s in symbols}
    cash = {a: D(rng.randint(-500, 20_000)) / 100 for a in accounts}
    # Some holdings known to the window, some not (no limit then).
    held = {(a, s): D(rng.randint(0, 5_000_000)) / D(100_000) for a in accounts for s in symbols
            if rng.random() < 0.6}
    sources = list(IntentSource)

    def random_intent() -> Intent:
        by_shares = rng.random() < 0.3
        return Intent(intent_id=uuid.uuid4(), account_id=rng.choice(accounts), symbol=rng.choice(symbols),
                      side=rng.choice([BUY, SELL]), source=rng.choice(sources),
                      amount=None if by_shares else D(rng.randint(1, 100_000)) / 100,
                      quantity=D(rng.randint(1, 3_000_000)) / D(100_000) if by_shares else None)

    intents = sorted((random_intent() for _ in range(rng.randint(1, 25))), key=lambda i: i.intent_id)
    await conn.execute("DELETE FROM cash WHERE account_id LIKE 'r-%'")
    await conn.execute("DELETE FROM positions WHERE account_id LIKE 'r-%'")
    await conn.executemany("INSERT INTO cash (account_id, cash, version) VALUES ($1, $2, 1)", list(cash.items()))
    await conn.executemany("INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, $2, $3, 1)",
                           [(a, s, q) for (a, s), q in held.items()])
    await store.set_prices(conn, prices)
    # Whatever is pending from elsewhere is set aside inside this rolled-back transaction.
    await conn.execute("UPDATE submitted_intents SET status = 'cancelled' WHERE status = 'pending'")
    from datetime import UTC, datetime
    now = datetime.now(UTC)
    await store.insert_intents(conn, uuid.uuid4(), intents, now)
    window_id = uuid.uuid4()
    assert await store.freeze_and_fund(conn, window_id, now, None, domain.BOTH_WINDOWS_EQUITY,
                                       domain.UNDER_MINIMUM) == len(intents)
    await store.insert_window(conn, window_id, now)
    funding = domain.fund(intents, cash, prices, held)
    rows = await conn.fetch("SELECT intent_id, status, funded_amount, funded_quantity, reason FROM intents "
                            "WHERE window_id = $1", window_id)
    assert {r["intent_id"]: r["funded_amount"] for r in rows
            if r["status"] == "frozen" and r["funded_amount"] is not None} == funding.funded
    assert {r["intent_id"]: r["funded_quantity"] for r in rows
            if r["status"] == "frozen" and r["funded_quantity"] is not None} == funding.shares
    assert {r["intent_id"]: r["reason"] for r in rows if r["status"] == "rejected"} == funding.rejected
    funded = funding.apply(intents)
    orders = await store.insert_net_orders(conn, window_id)
    assert orders == domain.net_orders(funded, prices)
    if not orders:
        return
    holds = json.loads(await store.cash_holds_json(conn, window_id))
    assert {a: D(m) for a, m in holds} == funding.needs
    # The window's prices move on; the rest of the window keeps the prices it funded at.
    await store.set_prices(conn, {s: p * 3 for s, p in prices.items()})
    halted = None
    if rng.random() < 0.4:  # one security halted: its intents carry over, the rest is funded again
        halted = rng.choice(orders).symbol
        carried = await store.carry_over(conn, window_id, {halted: "halted"})
        await store.fund_again(conn, window_id, [r["account_id"] for r in carried])
        orders = [o for o in orders if o.symbol != halted]
        refunding = domain.fund([i for i in funded if i.symbol != halted], cash, prices, held)
        await assert_funded_as(conn, window_id, refunding)
        funded = refunding.apply(funded)
        if not orders:
            return
    elif rng.random() < 0.5:  # the ledger finds accounts short, below zero where held withdrawals claim more
        told = {a: D(rng.randint(-20_000, 20_000)) / 100 for a in sorted({i.account_id for i in funded})
                if rng.random() < 0.6}
        await store.fund_again(conn, window_id, sorted(told), domain.LEDGER_SHORT, cash=told)
        refunding = domain.fund(funded, {**cash, **told}, prices, held)
        await assert_funded_as(conn, window_id, refunding)
        funded = refunding.apply(funded)
        orders = await store.net_again(conn, window_id)
        if not orders:
            return
    # at the last price, or at the lowest the venue may fill a limited order at
    executions = [market_fill(o, o.min_price if o.min_price and rng.random() < 0.5 else prices[o.symbol])
                  for o in orders]
    await store.record_executions(conn, window_id, executions)
    await store.allocate(conn, window_id)
    reference = domain.allocate(funded, executions, held)
    assert await store.fills_of(conn, window_id) == sorted(reference.fills, key=lambda f: str(f.intent_id))
    assert await store.residues_of(conn, window_id) == reference.residues
    # the firm keeps or supplies rounding only, the venue never selling shares nobody
    # delivers (but what a halt's new funding left of orders the venue had already traded)
    intents_in = Counter(i.symbol for i in funded)
    assert halted or all(abs(r.quantity) < D("0.00001") * (intents_in[r.symbol] + 1) for r in reference.residues)
    assert await store.replay_allocation(conn, window_id) == await store.fills_of(conn, window_id)
