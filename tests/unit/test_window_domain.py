"""The window's rules (accepting, netting, allocating), without I/O."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ledger.domain import fills as ledger_entry
from services.window import domain
from services.window.domain import Refusal
from shared.contracts import Execution, Intent, IntentsSubmitted, IntentSource, NetOrder, Side
from shared.money import cents, shares_down

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


def intent(account: str, symbol: str, side: Side, amount: str | Decimal) -> Intent:
    return Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, amount=amount,
                  source=IntentSource.AUTO_INVEST)


def venue(order: NetOrder, price: Decimal) -> Execution:
    """The market's fill rule, restated: shares rounded down, amount to the cent."""
    quantity = shares_down(order.notional / price)
    return Execution(symbol=order.symbol, side=order.side, quantity=quantity, price=price,
                     amount=cents(quantity * price))


def run_window(intents: list[Intent], prices: dict[str, Decimal]):
    executions = [venue(o, prices[o.symbol]) for o in domain.net_orders(intents)]
    return executions, domain.allocate(intents, executions)


# ---------------------------------------------------------------- accepting


def test_a_batch_of_share_quantity_intents_is_refused_for_now():
    batch = IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(), intents=[
        Intent(intent_id=uuid.uuid4(), account_id="a", symbol="VTI", side=SELL, quantity="1.5",
               source=IntentSource.REBALANCE)])
    with pytest.raises(Refusal, match="share-quantity intents are not supported yet"):
        domain.check_batch(batch)


def test_a_batch_with_another_accounts_intent_is_refused():
    batch = IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(), intents=[intent("b", "VTI", BUY, "1.00")])
    with pytest.raises(Refusal, match=r"other accounts \(b\)"):
        domain.check_batch(batch)


def test_a_batch_repeating_an_intent_id_is_refused():
    one = intent("a", "VTI", BUY, "1.00")
    batch = IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(), intents=[one, one])
    with pytest.raises(Refusal, match="repeated"):
        domain.check_batch(batch)


def test_a_batch_of_dollar_intents_of_its_account_is_accepted():
    domain.check_batch(IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(),
                                        intents=[intent("a", "VTI", BUY, "1.00"), intent("a", "BND", SELL, "2.00")]))


# ---------------------------------------------------------------- netting


def test_buys_and_sells_of_a_security_net_into_one_order():
    orders = domain.net_orders([intent("a", "VTI", BUY, "100.00"), intent("b", "VTI", SELL, "30.00"),
                                intent("c", "BND", SELL, "20.00"), intent("d", "BND", BUY, "5.00")])
    assert orders == [NetOrder(symbol="BND", side=SELL, notional=D("15.00")),
                      NetOrder(symbol="VTI", side=BUY, notional=D("70.00"))]


def test_a_fully_crossed_security_still_sends_a_zero_order_for_its_price():
    orders = domain.net_orders([intent("a", "VTI", BUY, "30.00"), intent("b", "VTI", SELL, "30.00")])
    assert orders == [NetOrder(symbol="VTI", side=BUY, notional=D("0.00"))]


# ---------------------------------------------------------------- allocating


def test_every_participant_gets_the_one_window_price():
    intents = [intent("a", "VTI", BUY, "100.00"), intent("b", "VTI", SELL, "30.00"), intent("c", "VTI", BUY, "7.77")]
    _, allocation = run_window(intents, {"VTI": D("250.00")})
    assert {f.price for f in allocation.fills} == {D("250.00")}
    assert [f.amount for f in allocation.fills] == [D("100.00"), D("30.00"), D("7.77")]


def test_a_buy_pays_its_amount_for_the_shares_rounded_down():
    _, allocation = run_window([intent("a", "BND", BUY, "400.00")], {"BND": D("72.50")})
    [f] = allocation.fills
    assert (f.quantity, f.amount) == (D("5.51724"), D("400.00"))  # 5.517241...


def test_a_sell_receives_its_amount_for_the_shares_rounded_up():
    _, allocation = run_window([intent("a", "BND", SELL, "400.00")], {"BND": D("72.50")})
    [f] = allocation.fills
    assert (f.quantity, f.amount) == (D("5.51725"), D("400.00"))


def test_the_residue_keeps_what_rounding_left_over():
    # The venue buys 0.51922 VGT for $321.99 (0.51922 x 620.15 = 321.994283); the buyer pays
    # $322.00 for the same 0.51922 shares, so the firm keeps one cent.
    _, allocation = run_window([intent("a", "VGT", BUY, "322.00")], {"VGT": D("620.15")})
    [r] = allocation.residues
    assert (r.symbol, r.quantity, r.amount) == ("VGT", D("0"), D("0.01"))


def test_the_residue_of_a_net_sell_is_counted_against_the_street():
    # a sells $100 and b buys $40 of BND at $72.50: the venue sells the net $60.
    intents = [intent("a", "BND", SELL, "100.00"), intent("b", "BND", BUY, "40.00")]
    [e], allocation = run_window(intents, {"BND": D("72.50")})
    assert (e.side, e.quantity, e.amount) == (SELL, D("0.82758"), D("60.00"))  # 0.827586...; 59.99955
    sell, buy = allocation.fills
    assert (sell.quantity, buy.quantity) == (D("1.37932"), D("0.55172"))  # 1.379310... up; 0.551724... down
    [r] = allocation.residues
    # cash: 40.00 - 100.00 - (-60.00) = 0; shares: -0.82758 - 0.55172 + 1.37932 = 0.00002
    assert (r.quantity, r.amount) == (D("0.00002"), D("0.00"))


def test_crossed_intents_trade_with_each_other_through_the_firm():
    intents = [intent("a", "VTI", BUY, "10.00"), intent("b", "VTI", SELL, "10.00")]
    executions, allocation = run_window(intents, {"VTI": D("3.00")})
    assert executions[0].quantity == 0 and executions[0].amount == 0
    buy, sell = allocation.fills
    assert (buy.quantity, sell.quantity) == (D("3.33333"), D("3.33334"))
    [r] = allocation.residues
    assert (r.quantity, r.amount) == (D("0.00001"), D("0.00"))


def test_a_security_without_an_execution_is_refused():
    with pytest.raises(Refusal, match="no execution for VTI"):
        domain.allocate([intent("a", "VTI", BUY, "10.00")], [])


def test_an_execution_on_the_wrong_side_is_refused():
    wrong = Execution(symbol="VTI", side=SELL, quantity="0.04", price="250.00", amount="10.00")
    with pytest.raises(Refusal, match="executed as a sell for a net buy order"):
        domain.allocate([intent("a", "VTI", BUY, "10.00")], [wrong])


def test_an_execution_for_a_security_without_intents_is_refused():
    extra = Execution(symbol="BND", side=BUY, quantity="0", price="72.50", amount="0")
    ok = venue(NetOrder(symbol="VTI", side=BUY, notional="10.00"), D("250.00"))
    with pytest.raises(Refusal, match="BND, which has no intents"):
        domain.allocate([intent("a", "VTI", BUY, "10.00")], [ok, extra])


def test_the_summary_shows_gross_net_and_price_per_security():
    intents = [intent("a", "VTI", BUY, "100.00"), intent("b", "VTI", SELL, "30.00")]
    executions, allocation = run_window(intents, {"VTI": D("250.00")})
    summary = domain.summary(intents, executions, allocation.residues)
    assert summary["intents"] == 2 and summary["accounts"] == 2
    vti = summary["securities"]["VTI"]
    assert (vti["gross_buy"], vti["gross_sell"], vti["net"], vti["price"]) == ("100.00", "30.00", "70.00", "250.00")


# ---------------------------------------------------------------- properties

SYMBOLS = ["VTI", "BND", "QQQ"]
amounts = st.integers(1, 10**8).map(lambda c: D(c).scaleb(-2))  # $0.01 .. $1,000,000.00
prices = st.integers(10_000, 10**9).map(lambda p: D(p).scaleb(-6))  # $0.01 .. $1,000.00, 6 decimals
intents_strategy = st.lists(
    st.builds(intent, st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(SYMBOLS), st.sampled_from(Side), amounts),
    min_size=1, max_size=30,
)


@given(intents_strategy, st.fixed_dictionaries({s: prices for s in SYMBOLS}))
def test_an_allocated_window_always_balances_in_the_ledger(intents, window_prices):
    executions, allocation = run_window(intents, window_prices)
    # The ledger's own rule: street + customers + residue sum to zero per asset, or it raises.
    ledger_entry(executions, allocation.fills, allocation.residues)


@given(intents_strategy, st.fixed_dictionaries({s: prices for s in SYMBOLS}))
def test_fills_are_exact_and_the_residue_stays_tiny(intents, window_prices):
    executions, allocation = run_window(intents, window_prices)
    assert [f.intent_id for f in allocation.fills] == [i.intent_id for s in sorted(SYMBOLS) for i in intents
                                                       if i.symbol == s]
    by_id = {i.intent_id: i for i in intents}
    for f in allocation.fills:
        assert f.amount == by_id[f.intent_id].amount
        assert f.price == window_prices[f.symbol]
        assert f.quantity >= 0 and f.quantity == f.quantity.quantize(D("0.00001"))
    for r in allocation.residues:
        n = sum(1 for i in intents if i.symbol == r.symbol)
        assert r.amount == r.amount.quantize(D("0.01")) and r.quantity == r.quantity.quantize(D("0.00001"))
        assert abs(r.quantity) < D("0.00001") * n + D("0.00001")
        assert abs(r.amount) < D("0.01") * (n + 1)
