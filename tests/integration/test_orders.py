"""The order service against the real RabbitMQ and PostgreSQL, with the window service for its
intents and cancels and the notification service for what the holder is told. The ledger's,
pie's and market's events are published by the test itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from shared.contracts import (
    AccountFills,
    CancelIntents,
    CancelOrder,
    CashChanged,
    DepositBooked,
    Fill,
    FundingRejected,
    GetFeed,
    GetOrder,
    GetOrders,
    IntentsCarriedOver,
    IntentsRejected,
    PieSet,
    PieSpec,
    PlaceOrder,
    PositionChanged,
    PricesChanged,
    Side,
)
from tests.integration.test_order_margin import handled, new_account, new_symbol, opened, publish
from tests.support import eventually, fetch, fetchval, fills_batch

pytestmark = pytest.mark.integration

D = Decimal
AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


@pytest.fixture
async def services(service_factory):
    async with service_factory("order").running(), service_factory("window").running(), \
            service_factory("notification").running():
        yield


class Holder:
    """An account with a pie of two fresh securities, cash, prices and maybe shares, as the
    order service sees them."""

    def __init__(self, bus, settings) -> None:
        self.bus, self.settings = bus, settings
        self.account, self.stock, self.bond = new_account(), new_symbol(), new_symbol()
        self.version = 0

    async def setup(self, cash: str = "100.00", stock_price: str = "20.00", bond_price: str = "50.00",
                    stock_shares: str | None = None) -> Holder:
        pie = PieSpec(name="two", slices=[{"target": 60, "symbol": self.stock}, {"target": 40, "symbol": self.bond}])
        events = [opened(self.account), PieSet(account_id=self.account, pie=pie),
                  PricesChanged(prices={self.stock: stock_price, self.bond: bond_price}, as_of=AT)]
        ids = [await publish(self.bus, e) for e in events]
        ids.append(await self.cash(cash))
        if stock_shares is not None:
            ids.append(await publish(self.bus, PositionChanged(account_id=self.account, symbol=self.stock,
                                                              quantity=stock_shares, delta=stock_shares,
                                                              version=self.version)))
        await handled(self.settings, "order", *ids)
        return self

    async def cash(self, amount: str) -> str:
        self.version += 1
        return await publish(self.bus, CashChanged(account_id=self.account, cash=amount, delta=amount,
                                                   cause="deposit", cause_id=str(uuid.uuid4()), version=self.version))

    async def place(self, side: str = "buy", symbol: str | None = None, **fields):
        reply = await self.bus.request(PlaceOrder(account_id=self.account, symbol=symbol or self.stock, side=side,
                                                  **fields))
        return reply

    async def placed(self, side: str = "buy", symbol: str | None = None, **fields) -> dict:
        reply = await self.place(side, symbol, **fields)
        assert reply.ok, reply
        return reply.result["order"]

    async def order(self, order_id) -> dict:
        reply = await self.bus.request(GetOrder(order_id=uuid.UUID(str(order_id))))
        assert reply.ok, reply
        return reply.result["order"]

    async def settled(self, order_id, status: str) -> dict:
        async def check():
            o = await self.order(order_id)
            return o if o["status"] == status else None

        return await eventually(check)

    async def intent(self, order_id) -> dict | None:
        rows = await fetch(self.settings.database_url,
                           'SELECT source, side, amount, quantity, status FROM "window".intents WHERE intent_id = $1',
                           uuid.UUID(str(order_id)))
        return dict(rows[0]) if rows else None

    async def feed(self, n: int, prefix: str = "") -> list[dict]:
        """The feed once it holds ``n`` entries (of kinds starting with ``prefix``)."""
        async def check():
            reply = await self.bus.request(GetFeed(account_id=self.account))
            entries = [e for e in reply.result["entries"] if e["kind"].startswith(prefix)]
            return entries if len(entries) >= n else None

        return await eventually(check)

    def fill(self, order: dict, quantity: str, amount: str, price: str) -> Fill:
        return Fill(intent_id=order["intent_id"], account_id=self.account, symbol=order["symbol"],
                    side=order["side"], quantity=quantity, amount=amount, price=price)

    def part(self, window_id: uuid.UUID, *fills: Fill, cash: str = "0.00",
             positions: dict[str, str] | None = None) -> AccountFills:
        """The account's part of a booked fills batch (its next version), with every position
        it holds after it (none unless given)."""
        self.version += 1
        return AccountFills(account_id=self.account, window_id=window_id, fills=list(fills), cash=cash,
                            positions=positions or {}, version=self.version, booked_at=AT)

    async def booked(self, window_id: uuid.UUID, *fills: Fill, cash: str = "0.00",
                     positions: dict[str, str] | None = None) -> str:
        """A booked fills batch of this account alone."""
        return await publish(self.bus, fills_batch(self.part(window_id, *fills, cash=cash, positions=positions)))


@pytest.fixture
async def holders(services, bus, settings):
    """Makes holders; afterwards cancels every intent their orders left at the window, so that
    no later test's window trades them."""
    made: list[Holder] = []

    def make() -> Holder:
        made.append(Holder(bus, settings))
        return made[-1]

    yield make
    ids = [r[c] for h in made for r in await fetch(
        settings.database_url, 'SELECT order_id, intent_id FROM "order".orders WHERE account_id = $1', h.account)
        for c in ("order_id", "intent_id")]
    if ids:
        reply = await bus.request(CancelIntents(intent_ids=ids))
        assert reply.ok, reply


@pytest.fixture
async def holder(holders) -> Holder:
    return await holders().setup()


# ---------------------------------------------------------------- placing


async def test_a_dollar_buy_becomes_an_order_intent_at_the_window_and_the_holder_is_told(holder):
    order = await holder.placed(amount="60.00")
    assert (order["status"], order["amount"], order["waiting_for"]) == ("pending", "60.00", None)
    intent = await eventually(lambda: holder.intent(order["order_id"]))
    assert intent == {"source": "order", "side": "buy", "amount": D("60.00"), "quantity": None, "status": "pending"}
    [note] = await holder.feed(1)
    assert note["kind"] == "order_placed"
    assert note["message"] == f"Order {order['order_id'][:8]} placed: buy $60.00 of {holder.stock} in the next trade window."
    listed = (await holder.bus.request(GetOrders(account_id=holder.account))).result["orders"]
    assert [o["order_id"] for o in listed] == [order["order_id"]]


async def test_orders_are_refused_with_the_reason_and_the_holder_is_told(holder):
    other = new_symbol()
    cases = [
        (dict(symbol=other, amount="10.00"), f"{other} is not a slice of the account's pie"),
        (dict(amount="150.00"), "insufficient cash"),
        (dict(amount="0.50"), "a buy is at least $1.00"),
        (dict(side="sell", amount="10.00"), "the sell is larger than the holding"),
        (dict(side="sell", quantity="1", deposit_id=uuid.uuid4(), deposit_amount="5.00"),
         "a deposit pays for a buy, not a sell"),
    ]
    for fields, reason in cases:
        reply = await holder.place(**fields)
        assert not reply.ok and reason in reply.reason, (fields, reply)
    notes = await holder.feed(len(cases))
    assert [n["kind"] for n in notes] == ["order_refused"] * len(cases)
    assert notes[1]["message"].startswith(f"Your buy $150.00 of {holder.stock} was refused: insufficient cash: the buy needs $150.00")
    # the contract refuses a non-positive amount before any rule
    reply = await holder.bus.request(PlaceOrder.model_construct(
        account_id=holder.account, symbol=holder.stock, side=Side.BUY, amount=D("-1.00"), quantity=None,
        deposit_id=None, deposit_amount=None))
    assert not reply.ok and "amount: must be positive" in reply.reason
    assert (await holder.bus.request(GetOrders(account_id=holder.account))).result["orders"] == []


async def test_an_order_of_an_unknown_account_or_without_a_pie_is_refused(holders, bus, settings):
    reply = await bus.request(PlaceOrder(account_id=new_account(), symbol="VTI", side="buy", amount="10.00"))
    assert not reply.ok and "unknown account" in reply.reason
    holder = holders()
    await handled(settings, "order", await publish(bus, opened(holder.account)), await holder.cash("100.00"))
    reply = await holder.place(amount="10.00")
    assert not reply.ok and "the account has no pie" in reply.reason


async def test_an_older_pie_change_handled_after_a_newer_one_does_not_bring_the_old_tree_back(holder):
    other = new_symbol()
    newer = PieSpec(name="newer", slices=[{"target": 50, "symbol": holder.stock}, {"target": 50, "symbol": other}])
    older = PieSpec(name="older", slices=[{"target": 60, "symbol": holder.stock}, {"target": 40, "symbol": holder.bond}])
    ids = [await publish(holder.bus, PieSet(account_id=holder.account, pie=newer, version=3)),
           await publish(holder.bus, PricesChanged(prices={other: "10.00"}, as_of=AT)),
           await publish(holder.bus, PieSet(account_id=holder.account, pie=older, version=2))]
    await handled(holder.settings, "order", *ids)
    assert (await holder.place(symbol=other, amount="10.00")).ok
    reply = await holder.place(symbol=holder.bond, amount="10.00")
    assert not reply.ok and f"{holder.bond} is not a slice of the account's pie" in reply.reason


async def test_open_orders_hold_cash_and_a_pending_sell_funds_a_buy(holders):
    holder = await holders().setup(cash="100.00", stock_shares="10")
    await holder.placed(symbol=holder.bond, amount="70.00")
    reply = await holder.place(symbol=holder.bond, amount="40.00")
    assert not reply.ok and "$30.00 is available" in reply.reason
    # a sell of $50.00 of the stock in the same window pays for it
    await holder.placed(side="sell", amount="50.00")
    await holder.placed(symbol=holder.bond, amount="40.00")
    # 10 shares held, 2.5 already being sold ($50.00 at $20.00): 8 is too many
    reply = await holder.place(side="sell", quantity="8")
    assert not reply.ok and "7.50000 are held and not already being sold" in reply.reason
    await holder.placed(side="sell", quantity="7.5")


async def test_a_share_buy_is_funded_at_the_last_price_plus_the_margin(holder):
    # 4 shares at $20.00 + 5% = $84.00 <= $100.00; 5 shares = $105.00 > $100.00
    reply = await holder.place(quantity="5")
    assert not reply.ok and "needs $105.00" in reply.reason
    order = await holder.placed(quantity="4")
    intent = await eventually(lambda: holder.intent(order["order_id"]))
    assert (intent["amount"], intent["quantity"]) == (None, D("4.00000"))


async def test_a_replayed_place_command_gets_the_same_order(holder):
    message_id = str(uuid.uuid4())
    command = PlaceOrder(account_id=holder.account, symbol=holder.stock, side="buy", amount="10.00")
    first = await holder.bus.request(command, message_id=message_id)
    again = await holder.bus.request(command, message_id=message_id)
    assert first.ok and again == first
    assert await fetchval(holder.settings.database_url, 'SELECT count(*) FROM "order".orders WHERE account_id = $1',
                          holder.account) == 1


# ---------------------------------------------------------------- a deposit with the order


async def test_an_order_waits_for_its_deposit_then_goes_to_the_window(holder):
    deposit_id = uuid.uuid4()
    order = await holder.placed(amount="250.00", deposit_id=deposit_id, deposit_amount="200.00")
    assert order["status"] == "pending" and order["waiting_for"] == f"deposit {deposit_id} of $200.00"
    assert await holder.intent(order["order_id"]) is None
    [note] = await holder.feed(1)
    assert note["message"].endswith("it waits for your deposit of $200.00.")
    booked = await publish(holder.bus, DepositBooked(account_id=holder.account, deposit_id=deposit_id,
                                                     amount="200.00", cash="300.00", booked_at=AT))
    await handled(holder.settings, "order", booked)
    assert (await holder.order(order["order_id"]))["waiting_for"] is None
    assert (await eventually(lambda: holder.intent(order["order_id"])))["amount"] == D("250.00")
    # "funded" is not notified: the deposit's own notification says it
    assert [n["kind"] for n in await holder.feed(2)] == ["order_placed", "deposit_received"]


async def test_an_order_whose_deposit_is_refused_is_rejected_with_the_reason(holder):
    deposit_id = uuid.uuid4()
    order = await holder.placed(amount="150.00", deposit_id=deposit_id, deposit_amount="100.00")
    await publish(holder.bus, FundingRejected(account_id=holder.account, funding_type="deposit",
                                              funding_id=str(deposit_id), amount="100.00",
                                              reason="the bank returned the transfer"))
    done = await holder.settled(order["order_id"], "rejected")
    assert done["reason"] == "the deposit that was to pay for it was refused: the bank returned the transfer"
    notes = await holder.feed(2)
    assert notes[-1]["kind"] == "order_rejected"
    # a new order with the refused deposit is refused at once
    reply = await holder.place(amount="10.00", deposit_id=deposit_id, deposit_amount="100.00")
    assert not reply.ok and "was refused" in reply.reason


async def test_an_order_placed_after_its_deposit_was_booked_goes_to_the_window_at_once(holder):
    deposit_id = uuid.uuid4()
    booked = await publish(holder.bus, DepositBooked(account_id=holder.account, deposit_id=deposit_id,
                                                     amount="100.00", cash="200.00", booked_at=AT))
    await handled(holder.settings, "order", booked, await holder.cash("200.00"))
    order = await holder.placed(amount="180.00", deposit_id=deposit_id, deposit_amount="100.00")
    assert order["waiting_for"] is None
    assert await eventually(lambda: holder.intent(order["order_id"]))


# ---------------------------------------------------------------- cancel


async def test_cancel_before_the_window_cancels_the_intent_and_the_order(holder):
    order = await holder.placed(amount="10.00")
    await eventually(lambda: holder.intent(order["order_id"]))
    reply = await holder.bus.request(CancelOrder(order_id=order["order_id"]))
    assert reply.ok and reply.result["order"]["cancel_requested"] is True
    done = await holder.settled(order["order_id"], "cancelled")
    assert done["cancel_requested"] is False
    assert (await holder.intent(order["order_id"]))["status"] == "cancelled"
    notes = await holder.feed(2)
    assert [n["kind"] for n in notes] == ["order_placed", "order_cancelled"]
    again = await holder.bus.request(CancelOrder(order_id=order["order_id"]))
    assert not again.ok and again.reason == f"order {order['order_id']} is already cancelled"
    told = (await holder.feed(3))[-1]
    assert (told["kind"], told["message"]) == (
        "order_refused", f"Your cancel of order {order['order_id'][:8]}: buy $10.00 of {holder.stock} was refused: "
                         f"order {order['order_id']} is already cancelled")


async def test_cancel_of_an_order_waiting_for_its_deposit_is_immediate(holder):
    deposit_id = uuid.uuid4()
    order = await holder.placed(amount="150.00", deposit_id=deposit_id, deposit_amount="100.00")
    reply = await holder.bus.request(CancelOrder(order_id=order["order_id"]))
    assert reply.ok and reply.result["order"]["status"] == "cancelled"
    booked = await publish(holder.bus, DepositBooked(account_id=holder.account, deposit_id=deposit_id,
                                                     amount="100.00", cash="200.00", booked_at=AT))
    await handled(holder.settings, "order", booked)
    assert (await holder.order(order["order_id"]))["status"] == "cancelled"
    assert await holder.intent(order["order_id"]) is None


async def test_cancel_after_the_window_started_is_refused_and_the_order_stays_open(holder):
    order = await holder.placed(amount="10.00")
    await eventually(lambda: holder.intent(order["order_id"]))
    # The window has started for this intent: as a close leaves it (a real close is in
    # tests/e2e/test_orders_flow.py; here no venue runs, and a window left executing would
    # reach a later test's venue).
    await frozen(holder.settings, order["order_id"], True)
    reply = await holder.bus.request(CancelOrder(order_id=order["order_id"]))
    assert reply.ok

    async def refused():
        o = await holder.order(order["order_id"])
        return o if not o["cancel_requested"] else None

    done = await eventually(refused)
    assert done["status"] == "pending" and "has started" in done["reason"]
    notes = await holder.feed(2)
    assert notes[-1]["kind"] == "order_cancel_refused"
    assert "could not be cancelled: its window" in notes[-1]["message"]
    await frozen(holder.settings, order["order_id"], False)  # pending again, for the cleanup's cancel


async def frozen(settings, order_id: str, on: bool) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        # as a window's freeze (and a carry-over back) moves it
        source, target = ("submitted_intents", "window_intents") if on else ("window_intents", "submitted_intents")
        await conn.execute(
            f"""WITH m AS (DELETE FROM "window".{source} WHERE intent_id = $1 RETURNING *)
                INSERT INTO "window".{target} (intent_id, batch_id, account_id, symbol, side, amount, quantity,
                                               source, status, window_id, reason, created_at)
                SELECT intent_id, batch_id, account_id, symbol, side, amount, quantity, source, $2, $3, reason,
                       created_at FROM m""",
            uuid.UUID(order_id), "frozen" if on else "pending", uuid.uuid4() if on else None)
    finally:
        await conn.close()


# ---------------------------------------------------------------- outcomes


async def test_fills_carry_overs_and_rejections_end_each_order_in_one_final_state(holder):
    window, later = uuid.uuid4(), uuid.uuid4()
    full = await holder.placed(amount="20.00")
    scaled = await holder.placed(symbol=holder.bond, amount="50.00")
    carried = await holder.placed(amount="10.00")
    dropped = await holder.placed(symbol=holder.bond, amount="5.00")
    await publish(holder.bus, IntentsCarriedOver(account_id=holder.account, window_id=window, symbols=[holder.stock],
                                                 intents=[carried["order_id"]], reason="news pending"))
    await publish(holder.bus, IntentsRejected(account_id=holder.account, window_id=window,
                                              reasons={dropped["order_id"]: "insufficient cash: under $1"}))
    await holder.booked(window, holder.fill(full, "1.00000", "20.00", "20.00"),
                        holder.fill(scaled, "0.80000", "40.00", "50.00"))
    assert (await holder.settled(full["order_id"], "executed"))["filled_amount"] == "20.00"
    partial = await holder.settled(scaled["order_id"], "partially_executed")
    assert (partial["filled_quantity"], partial["filled_amount"], partial["price"]) == ("0.80000", "40.00",
                                                                                       "50.000000")
    assert (await holder.settled(carried["order_id"], "carried_over"))["reason"] == "news pending"
    assert (await holder.settled(dropped["order_id"], "rejected"))["reason"] == "insufficient cash: under $1"
    # the carried-over order fills in the next window; a late or repeated event changes no final state
    await holder.booked(later, holder.fill(carried, "0.50000", "10.00", "20.00"))
    await holder.settled(carried["order_id"], "executed")
    last = await holder.booked(uuid.uuid4(), holder.fill(dropped, "0.10000", "5.00", "50.00"),
                               holder.fill(full, "2.00000", "40.00", "20.00"))
    await handled(holder.settings, "order", last)
    assert (await holder.order(dropped["order_id"]))["status"] == "rejected"
    assert (await holder.order(full["order_id"]))["filled_amount"] == "20.00"
    notes = await holder.feed(9, "order_")
    kinds = [n["kind"] for n in notes]
    assert kinds[:4] == ["order_placed"] * 4
    assert sorted(kinds[4:]) == sorted(["order_carried_over", "order_rejected", "order_executed",
                                        "order_partially_executed", "order_executed"])
    messages = {n["message"] for n in notes}
    assert f"Order {full['order_id'][:8]} executed: bought 1.00000 {holder.stock} for $20.00 at $20.00." in messages
    assert (f"Order {carried['order_id'][:8]} (buy $10.00 of {holder.stock}) waits for the next window: "
            "news pending.") in messages


async def test_one_fills_batch_ends_the_orders_of_every_account_in_it(holders):
    """A ``ledger.fills.booked`` batch of two accounts: each account's order is followed from
    its own fill, and each holder is told."""
    first, second = [await holders().setup() for _ in range(2)]
    window = uuid.uuid4()
    bought = await first.placed(amount="20.00")
    scaled = await second.placed(amount="50.00")
    batch = fills_batch(second.part(window, second.fill(scaled, "2.00000", "40.00", "20.00"), cash="60.00"),
                        first.part(window, first.fill(bought, "1.00000", "20.00", "20.00"), cash="80.00"))
    assert [a.account_id for a in batch.accounts] == sorted([first.account, second.account])
    await handled(first.settings, "order", await publish(first.bus, batch))
    done = await first.settled(bought["order_id"], "executed")
    assert (done["filled_amount"], done["window_id"]) == ("20.00", str(window))
    partial = await second.settled(scaled["order_id"], "partially_executed")
    assert (partial["filled_amount"], partial["rest_amount"], partial["window_id"]) == ("40.00", "10.00", str(window))
    cash = {r["account_id"]: r["cash"] for r in await fetch(
        first.settings.database_url, 'SELECT account_id, cash FROM "order".cash WHERE account_id = ANY($1)',
        [first.account, second.account])}
    assert cash == {first.account: D("80.00"), second.account: D("60.00")}
    assert [n["kind"] for n in await first.feed(2, "order_")] == ["order_placed", "order_executed"]
    assert [n["kind"] for n in await second.feed(2, "order_")] == ["order_placed", "order_partially_executed"]


# ---------------------------------------------------------------- a partly filled order's rest


async def partly_filled(holder: Holder, amount: str = "50.00", filled: str = "30.00") -> tuple[dict, dict]:
    """A dollar buy of the stock the window scaled to ``filled`` at $20.00: the order and its
    state once partly executed."""
    order = await holder.placed(amount=amount)
    await holder.booked(uuid.uuid4(), holder.fill(order, str(D(filled) / 20), filled, "20.00"))
    return order, await holder.settled(order["order_id"], "partially_executed")


async def test_a_scaled_buy_carries_its_rest_to_the_next_window_and_executes_after_a_deposit(holder):
    order, partial = await partly_filled(holder)
    assert (partial["final"], partial["part"], partial["rest_amount"], partial["filled_amount"]) == (
        False, 2, "20.00", "30.00")
    assert partial["intent_id"] != order["order_id"]
    assert partial["reason"] == ("the window funded less than the order: the account's cash did not cover all of "
                                 "it; the rest, $20.00, is carried to the next window")
    # the rest is the order's next intent at the window, for $20.00
    rest = await eventually(lambda: holder.intent(partial["intent_id"]))
    assert (rest["source"], rest["side"], rest["amount"], rest["status"]) == ("order", "buy", D("20.00"), "pending")
    # the rest holds the account's cash for new orders: $100.00 deposited, $20.00 held by the rest
    await handled(holder.settings, "order", await holder.cash("100.00"))
    reply = await holder.place(symbol=holder.bond, amount="90.00")
    assert not reply.ok and "$80.00 is available" in reply.reason
    # the part-1 fill again changes nothing; the rest fills in full at $40.00 in the next window
    again = await holder.booked(uuid.uuid4(), holder.fill(order, "1.50000", "30.00", "20.00"))
    await handled(holder.settings, "order", again)
    assert (await holder.order(order["order_id"]))["version"] == partial["version"]
    await holder.booked(uuid.uuid4(), holder.fill(partial, "0.50000", "20.00", "40.00"))
    done = await holder.settled(order["order_id"], "executed")
    assert (done["final"], done["filled_quantity"], done["filled_amount"], done["price"], done["reason"]) == (
        True, "2.00000", "50.00", "25.000000", None)
    notes = await holder.feed(4, "order_")
    assert [n["kind"] for n in notes] == ["order_placed", "order_partially_executed", "order_refused",
                                          "order_executed"]
    assert notes[1]["message"] == (
        f"Order {order['order_id'][:8]} partially executed (buy $50.00 of {holder.stock}): bought 1.50000 "
        f"{holder.stock} for $30.00 at $20.00; the window funded less than the order: the account's cash did not "
        "cover all of it; the rest, $20.00, is carried to the next window.")
    assert notes[3]["message"] == (f"Order {order['order_id'][:8]} executed: bought 2.00000 {holder.stock} "
                                   "for $50.00 at $25.00.")


async def test_a_rejected_rest_ends_the_order_partially_executed_with_the_windows_reason(holder):
    order, partial = await partly_filled(holder)
    await publish(holder.bus, IntentsRejected(account_id=holder.account, window_id=uuid.uuid4(),
                                              reasons={partial["intent_id"]: "insufficient cash: under $1"}))

    async def ended():
        o = await holder.order(order["order_id"])
        return o if o["final"] else None

    done = await eventually(ended)
    assert (done["status"], done["filled_amount"], done["reason"]) == (
        "partially_executed", "30.00", "the rest, $20.00, was rejected: insufficient cash: under $1")
    # final: a late fill of the rest changes nothing, and a cancel is refused
    late = await holder.booked(uuid.uuid4(), holder.fill(partial, "0.50000", "20.00", "40.00"))
    await handled(holder.settings, "order", late)
    assert (await holder.order(order["order_id"]))["version"] == done["version"]
    reply = await holder.bus.request(CancelOrder(order_id=order["order_id"]))
    assert not reply.ok and reply.reason == f"order {order['order_id']} is already partially executed"
    notes = await holder.feed(3, "order_p")
    assert notes[-1]["message"].endswith("; the rest, $20.00, was rejected: insufficient cash: under $1.")


async def test_cancel_of_a_carried_rest_cancels_its_intent_and_ends_the_order(holder):
    order, partial = await partly_filled(holder)
    await eventually(lambda: holder.intent(partial["intent_id"]))
    reply = await holder.bus.request(CancelOrder(order_id=order["order_id"]))
    assert reply.ok and reply.result["order"]["cancel_requested"] is True

    async def ended():
        o = await holder.order(order["order_id"])
        return o if o["final"] else None

    done = await eventually(ended)
    assert (done["status"], done["cancel_requested"], done["filled_amount"], done["reason"]) == (
        "partially_executed", False, "30.00", "the rest, $20.00, was cancelled by the holder before its window")
    assert (await holder.intent(partial["intent_id"]))["status"] == "cancelled"
    assert (await holder.intent(order["order_id"])) is not None  # part 1 stays as the window left it


async def test_a_share_sell_limited_to_the_shares_held_carries_the_rest_until_the_window_finds_none(holders):
    holder = await holders().setup(stock_shares="3")
    order = await holder.placed(side="sell", quantity="3")
    await holder.booked(uuid.uuid4(), holder.fill(order, "2.00000", "40.00", "20.00"))
    partial = await holder.settled(order["order_id"], "partially_executed")
    assert (partial["final"], partial["rest_quantity"], partial["rest_amount"]) == (False, "1.00000", None)
    rest = await eventually(lambda: holder.intent(partial["intent_id"]))
    assert (rest["side"], rest["quantity"], rest["amount"]) == ("sell", D("1.00000"), None)
    # a halt carries the rest again: the order stays partially executed with its fills
    window = uuid.uuid4()
    halt = await publish(holder.bus, IntentsCarriedOver(account_id=holder.account, window_id=window,
                                                        symbols=[holder.stock], intents=[partial["intent_id"]],
                                                        reason="news pending"))
    await handled(holder.settings, "order", halt)
    halted = await holder.order(order["order_id"])
    assert (halted["status"], halted["final"], halted["reason"], halted["filled_quantity"]) == (
        "partially_executed", False, "news pending", "2.00000")
    await publish(holder.bus, IntentsRejected(account_id=holder.account, window_id=uuid.uuid4(),
                                              reasons={partial["intent_id"]: "nothing held to sell"}))

    async def ended():
        o = await holder.order(order["order_id"])
        return o if o["final"] else None

    done = await eventually(ended)
    assert (done["status"], done["reason"]) == ("partially_executed",
                                                "the rest, 1 shares, was rejected: nothing held to sell")


async def test_a_sell_order_after_the_account_sold_out_is_refused(holders):
    """The booked fills list every position the account holds: one they leave out is sold out,
    and the order service no longer lets it be sold (it kept the old quantity before)."""
    holder = await holders().setup(stock_shares="3")
    order = await holder.placed(side="sell", quantity="3")
    sold = holder.fill(order, "3.00000", "60.00", "20.00")
    await handled(holder.settings, "order", await holder.booked(uuid.uuid4(), sold, cash="160.00"))
    await holder.settled(order["order_id"], "executed")
    reply = await holder.place(side="sell", quantity="1")
    assert not reply.ok and "0 are held and not already being sold" in reply.reason, reply
