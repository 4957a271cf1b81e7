"""The order service's pure rules: validation, funding of buys, sells against the holding, and
what a fill means for an order; and how the holder is told about orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.notification import domain as notes
from services.order import domain
from services.order.domain import Order, check
from shared.contracts import OrderChanged, OrderRefused, OrderState, OrderStatus, PieSpec, Side

D = Decimal
AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
PRICES = {"VTI": D("20.00"), "BND": D("50.00")}

cents = st.integers(min_value=100, max_value=10_000_000).map(lambda c: D(c) / 100)
quantities = st.integers(min_value=1, max_value=10_000_000).map(lambda q: D(q) / 100_000)


def ok(order: Order, cash: str = "100.00", held: str = "0", others=(), pie=("VTI", "BND")) -> list[str]:
    return check(order, account_known=True, pie_symbols=pie, cash=D(cash), held=D(held), open_orders=list(others),
                 prices=PRICES)


def test_leaves_are_every_security_of_the_tree_once():
    pie = PieSpec.model_validate({"name": "p", "slices": [
        {"target": 50, "symbol": "VTI"},
        {"target": 50, "pie": {"name": "q", "slices": [{"target": 50, "symbol": "BND"},
                                                        {"target": 50, "pie": {"name": "r", "slices": [
                                                            {"target": 100, "symbol": "VTI"}]}}]}}]})
    assert domain.leaves(pie) == ["BND", "VTI"]


def test_an_order_outside_the_pie_or_without_a_pie_or_account_is_refused():
    assert ok(Order(Side.BUY, "XYZ", D("10.00"))) == ["XYZ is not a slice of the account's pie"]
    assert ok(Order(Side.BUY, "VTI", D("10.00")), pie=None) == [
        "the account has no pie: an order buys or sells one of its slices"]
    assert check(Order(Side.BUY, "VTI", D("10.00")), account_known=False, pie_symbols=None, cash=D(0), held=D(0),
                 open_orders=[], prices=PRICES) == ["unknown account"]


def test_a_buy_is_funded_by_cash_pending_sells_and_its_deposit_less_pending_buys():
    assert ok(Order(Side.BUY, "VTI", D("100.00"))) == []
    [reason] = ok(Order(Side.BUY, "VTI", D("100.01")))
    assert reason.startswith("insufficient cash: the buy needs $100.01 and $100.00 is available")
    assert ok(Order(Side.BUY, "VTI", D("150.00"), unbooked_deposit=D("50.00"))) == []
    assert ok(Order(Side.BUY, "VTI", D("60.00")), others=[Order(Side.BUY, "BND", D("50.00"))]) != []
    assert ok(Order(Side.BUY, "VTI", D("60.00")),
              others=[Order(Side.BUY, "BND", D("50.00")), Order(Side.SELL, "BND", D("10.00"))]) == []
    # a share sell's proceeds count at the last price less the margin: 1 x $50.00 x 0.95
    assert ok(Order(Side.BUY, "VTI", D("147.50")), others=[Order(Side.SELL, "BND", quantity=D("1"))]) == []
    assert ok(Order(Side.BUY, "VTI", D("147.51")), others=[Order(Side.SELL, "BND", quantity=D("1"))]) != []


def test_a_share_buy_counts_at_the_last_price_plus_the_margin_and_needs_a_price():
    assert ok(Order(Side.BUY, "VTI", quantity=D("4.7619"))) == []  # $99.99990 -> $100.00
    assert ok(Order(Side.BUY, "VTI", quantity=D("4.76191"))) != []  # $100.0001 -> $100.01
    assert check(Order(Side.BUY, "XYZ", quantity=D("1")), account_known=True, pie_symbols=["XYZ"], cash=D(100),
                 held=D(0), open_orders=[], prices={}) == ["no price known for XYZ to value the shares"]


def test_a_buy_under_a_dollar_and_a_deposit_with_a_sell_are_refused():
    assert ok(Order(Side.BUY, "VTI", D("0.99"))) == ["a buy is at least $1.00"]
    assert ok(Order(Side.SELL, "VTI", quantity=D("1"), unbooked_deposit=D("5"))) == [
        "a deposit pays for a buy, not a sell"]
    assert ok(Order(Side.SELL, "VTI", quantity=D("0"))) == ["the quantity must be positive"]


def test_sells_together_are_never_larger_than_the_holding():
    assert ok(Order(Side.SELL, "VTI", quantity=D("10")), held="10") == []
    assert ok(Order(Side.SELL, "VTI", D("200.00")), held="10") == []  # 10 shares at $20.00
    assert ok(Order(Side.SELL, "VTI", D("200.01")), held="10") != []
    pending = [Order(Side.SELL, "VTI", D("50.00")), Order(Side.SELL, "BND", quantity=D("3"))]
    assert ok(Order(Side.SELL, "VTI", quantity=D("7.5")), held="10", others=pending) == []
    [reason] = ok(Order(Side.SELL, "VTI", quantity=D("7.50001")), held="10", others=pending)
    assert reason.endswith("7.50000 are held and not already being sold")


@given(cash=cents, amounts=st.lists(cents, min_size=1, max_size=8))
def test_accepted_buys_never_hold_more_than_the_cash(cash, amounts):
    accepted: list[Order] = []
    for amount in amounts:
        order = Order(Side.BUY, "VTI", amount)
        if not ok(order, cash=str(cash), others=accepted):
            accepted.append(order)
    assert sum((o.amount for o in accepted), D(0)) <= cash
    assert domain.available_cash(cash, accepted, PRICES) >= 0


@given(held=quantities, wanted=st.lists(st.one_of(quantities.map(lambda q: ("q", q)), cents.map(lambda a: ("a", a))),
                                        min_size=1, max_size=8))
def test_accepted_sells_never_need_more_shares_than_held(held, wanted):
    accepted: list[Order] = []
    for kind, value in wanted:
        order = Order(Side.SELL, "VTI", quantity=value) if kind == "q" else Order(Side.SELL, "VTI", amount=value)
        if not ok(order, held=str(held), others=accepted):
            accepted.append(order)
    assert sum((domain.sell_shares(o, PRICES["VTI"]) for o in accepted), D(0)) <= held


@given(amount=cents, filled=cents)
def test_a_dollar_rest_of_a_dollar_or_more_is_carried_and_a_smaller_one_ends_the_order(amount, filled):
    filled = min(filled, amount)
    for side in Side:
        result = domain.after_fill(side, amount, None, None, None, None, D("1"), filled, D("10"))
        rest = amount - filled
        assert (result.filled_amount, result.filled_quantity, result.price) == (filled, D("1"), D("10"))
        if rest == 0:
            assert (result.status, result.final, result.reason, result.carried) == (
                OrderStatus.EXECUTED, True, None, False)
        elif rest < D("1.00"):
            assert (result.status, result.final, result.carried) == (OrderStatus.PARTIALLY_EXECUTED, True, False)
            assert f"the rest, ${rest:,.2f}, is under the $1.00 a window trades and is not carried" in result.reason
        else:
            assert (result.status, result.final, result.rest_amount, result.rest_quantity) == (
                OrderStatus.PARTIALLY_EXECUTED, False, rest, None)
            assert result.reason.endswith(f"the rest, ${rest:,.2f}, is carried to the next window")


def test_a_share_order_carries_the_shares_not_traded():
    done = domain.after_fill(Side.SELL, None, D("2"), None, None, None, D("2"), D("40.00"), D("20"))
    assert (done.status, done.final) == (OrderStatus.EXECUTED, True)
    partial = domain.after_fill(Side.SELL, None, D("2"), None, None, None, D("1.5"), D("30.00"), D("20"))
    assert (partial.status, partial.final, partial.rest_quantity, partial.rest_amount) == (
        OrderStatus.PARTIALLY_EXECUTED, False, D("0.5"), None)
    assert partial.reason == ("the window sold less than the order: the account held fewer shares; "
                              "the rest, 0.5 shares, is carried to the next window")


@given(amount=st.decimals("1.00", "10000", places=2), shares=st.lists(st.integers(0, 100), min_size=1, max_size=8))
def test_parts_never_trade_more_than_the_order_and_it_ends_final_once(amount, shares):
    """Each window funds some percentage of what the current part asks; the parts' fills
    plus the carried rest are always the order's amount, and the order ends final at most once."""
    rest, quantity, filled, price, final = amount, None, None, None, False
    for pct in shares:
        fill = (rest * pct / 100).quantize(D("0.01"), rounding="ROUND_DOWN")
        result = domain.after_fill(Side.BUY, rest, None, quantity, filled, price, fill / 10, fill, D("10"))
        quantity, filled, price = result.filled_quantity, result.filled_amount, result.price
        assert filled <= amount
        if result.final:
            final = True
            assert result.rest_amount is None and (amount - filled < D("1.00"))
            assert (result.status is OrderStatus.EXECUTED) == (filled == amount)
            break
        assert result.status is OrderStatus.PARTIALLY_EXECUTED and filled + result.rest_amount == amount
        assert result.rest_amount >= D("1.00")
        rest = result.rest_amount
    assert final or rest >= D("1.00")


def test_fills_of_the_parts_add_up_at_their_quantity_weighted_average_price():
    # a $100.00 buy scaled to $60.00 at $20, then the $40.00 rest at $40
    first = domain.after_fill(Side.BUY, D("100.00"), None, None, None, None, D("3"), D("60.00"), D("20"))
    assert first.rest_amount == D("40.00") and not first.final
    second = domain.after_fill(Side.BUY, first.rest_amount, None, first.filled_quantity, first.filled_amount,
                               first.price, D("1"), D("40.00"), D("40"))
    assert (second.status, second.final, second.filled_quantity, second.filled_amount, second.price) == (
        OrderStatus.EXECUTED, True, D("4"), D("100.00"), D("25.000000"))


@given(parts=st.lists(st.tuples(st.decimals("0.00001", "1000", places=5), st.decimals("0.01", "1000", places=2)),
                      min_size=1, max_size=5))
def test_the_average_price_lies_between_the_fills_prices(parts):
    quantity, price = None, None
    for q, p in parts:
        price = domain.average_price(quantity, price, q, p)
        quantity = (quantity or D(0)) + q
    low, high = min(p for _, p in parts), max(p for _, p in parts)
    assert low <= price <= high


def test_each_part_has_its_own_intent_id_the_same_every_time():
    order_id = uuid.uuid4()
    assert domain.part_intent(order_id, 1) == order_id
    assert domain.part_intent(order_id, 2) == domain.part_intent(order_id, 2) != order_id
    assert domain.part_intent(order_id, 3) not in (order_id, domain.part_intent(order_id, 2))


def test_a_rejected_or_cancelled_rest_ends_the_order_with_what_happened_to_it():
    assert domain.rest_ended(False, D("10.00"), None, rejected="no cash") == (OrderStatus.REJECTED, "no cash")
    assert domain.rest_ended(False, D("10.00"), None) == (OrderStatus.CANCELLED,
                                                          "cancelled by the holder before its window")
    assert domain.rest_ended(True, D("40.00"), None, rejected="insufficient cash") == (
        OrderStatus.PARTIALLY_EXECUTED, "the rest, $40.00, was rejected: insufficient cash")
    assert domain.rest_ended(True, None, D("0.5")) == (
        OrderStatus.PARTIALLY_EXECUTED, "the rest, 0.5 shares, was cancelled by the holder before its window")


def test_a_cancel_is_asked_again_only_while_the_window_does_not_know_the_intent():
    assert domain.cancel_outcome("already cancelled") is OrderStatus.CANCELLED
    assert domain.cancel_outcome("its window w has started (intent frozen)") is None
    assert domain.ask_again("unknown intent", 0) and not domain.ask_again("unknown intent", domain.CANCEL_ASKS)
    assert not domain.ask_again("its window w has started (intent frozen)", 0)


def test_only_partially_executed_is_both_open_and_final():
    assert domain.OPEN & domain.FINAL == {OrderStatus.PARTIALLY_EXECUTED}
    assert domain.OPEN | domain.FINAL == set(OrderStatus)


# ---------------------------------------------------------------- notifications of orders


def state(**fields) -> OrderState:
    base = dict(order_id=uuid.UUID("1a2b3c4d-0000-4000-8000-000000000000"), account_id="alice", symbol="VTI",
                side="buy", amount=D("100.00"), status="pending", placed_at=AT, updated_at=AT, version=1)
    return OrderState(**{**base, **fields})


def told(change: str, **fields) -> notes.Notification | None:
    return notes.order_changed(OrderChanged(account_id="alice", change=change, order=state(**fields)))


def test_each_order_change_the_holder_cares_about_is_worded():
    assert told("placed").message == "Order 1a2b3c4d placed: buy $100.00 of VTI in the next trade window."
    waiting = told("placed", deposit_id=uuid.uuid4(), deposit_amount=D("200.00"), waiting_for="deposit x of $200.00")
    assert waiting.message == "Order 1a2b3c4d placed: buy $100.00 of VTI; it waits for your deposit of $200.00."
    assert told("cancelled", status="cancelled").message == "Order 1a2b3c4d cancelled: buy $100.00 of VTI."
    assert told("cancel_refused", reason="not cancelled: its window 9f has started (intent frozen)").message == (
        "Order 1a2b3c4d (buy $100.00 of VTI) could not be cancelled: its window 9f has started (intent frozen).")
    assert told("carried_over", status="carried_over", reason="news pending").message == (
        "Order 1a2b3c4d (buy $100.00 of VTI) waits for the next window: news pending.")
    done = told("executed", status="executed", filled_quantity=D("0.39808"), filled_amount=D("100.00"),
                price=D("251.2"))
    assert (done.kind, done.message) == ("order_executed",
                                         "Order 1a2b3c4d executed: bought 0.39808 VTI for $100.00 at $251.20.")
    assert done.data["change"] == "executed" and done.data["filled_amount"] == "100.00"
    sold = told("partially_executed", side="sell", amount=None, quantity=D("2"), status="partially_executed",
                filled_quantity=D("1.5"), filled_amount=D("30.00"), price=D("20"), reason="held fewer")
    assert sold.message == ("Order 1a2b3c4d partially executed (sell 2 shares of VTI): sold 1.5 VTI for $30.00 "
                            "at $20.00; held fewer.")
    assert told("rejected", status="rejected", reason="insufficient cash").message == (
        "Order 1a2b3c4d rejected (buy $100.00 of VTI): insufficient cash.")


def test_changes_that_say_nothing_new_are_not_notified():
    assert told("funded") is None and told("cancel_requested", cancel_requested=True) is None


def test_a_refused_order_request_is_worded_with_its_reason():
    note = notes.order_refused(OrderRefused(account_id="alice", request="buy $10.00 of XYZ",
                                            reason="XYZ is not a slice of the account's pie"))
    assert (note.kind, note.message) == ("order_refused",
                                         "Your buy $10.00 of XYZ was refused: XYZ is not a slice of the account's pie")


def test_a_partly_executed_order_says_whether_its_rest_is_carried():
    carried = told("partially_executed", status="partially_executed", final=False, rest_amount=D("40.00"),
                   filled_quantity=D("3"), filled_amount=D("60.00"), price=D("20"),
                   reason="the window funded less than the order; the rest, $40.00, is carried to the next window")
    assert carried.message == ("Order 1a2b3c4d partially executed (buy $100.00 of VTI): bought 3 VTI for $60.00 at "
                               "$20.00; the window funded less than the order; the rest, $40.00, is carried to the "
                               "next window.")
    assert carried.data["final"] is False and carried.data["rest_amount"] == "40.00"


def test_the_cli_tells_open_orders_from_final_ones():
    from m1.order_commands import is_final, status_line

    base = dict(side="buy", amount="100.00", quantity=None, symbol="VTI", filled_quantity="3",
                filled_amount="60.00", price="20", reason="r")
    open_ = {**base, "status": "partially_executed", "final": False, "rest_amount": "40.00"}
    assert not is_final(open_) and status_line(open_).startswith("partially executed, rest $40.00 carried: 3 for")
    done = {**base, "status": "partially_executed", "final": True, "rest_amount": "40.00"}
    assert is_final(done) and status_line(done).startswith("partially executed: 3 for $60.00")
    # an order state without the flag is judged by its status
    assert is_final({**base, "status": "executed"}) and not is_final({**base, "status": "carried_over"})
