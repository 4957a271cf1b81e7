"""The window's rules (accepting, netting, allocating), without I/O."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import given, settings
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
    """The market's fill rule, restated: the notional's shares rounded down plus the order's
    signed shares, amount to the cent."""
    dollars = shares_down(order.notional / price)
    net = (dollars if order.side is BUY else -dollars) + order.shares
    side = order.side if order.shares == 0 else (BUY if net >= 0 else SELL)
    return Execution(symbol=order.symbol, side=side, quantity=abs(net), price=price, amount=cents(abs(net) * price))


def shares_intent(account: str, symbol: str, side: Side, quantity: str | Decimal,
                  source: IntentSource = IntentSource.ORDER) -> Intent:
    return Intent(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, quantity=quantity,
                  source=source)


def run_window(intents: list[Intent], prices: dict[str, Decimal]):
    executions = [venue(o, prices[o.symbol]) for o in domain.net_orders(intents)]
    return executions, domain.allocate(intents, executions)


# ---------------------------------------------------------------- accepting


def test_a_batch_of_share_quantity_intents_is_accepted():
    domain.check_batch(IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(), intents=[
        Intent(intent_id=uuid.uuid4(), account_id="a", symbol="VTI", side=SELL, quantity="1.5",
               source=IntentSource.REBALANCE)]))


def test_a_batch_with_another_accounts_intent_is_refused():
    batch = IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(), intents=[intent("b", "VTI", BUY, "1.00")])
    with pytest.raises(Refusal, match=r"other accounts \(b\)"):
        domain.check_batch(batch)


def test_a_batch_repeating_an_intent_id_is_refused():
    one = intent("a", "VTI", BUY, "1.00")
    batch = IntentsSubmitted(account_id="a", batch_id=uuid.uuid4(), intents=[one, one])
    with pytest.raises(Refusal, match="repeated"):
        domain.check_batch(batch)



@pytest.mark.parametrize("status", ["executing", "allocated"])
def test_a_window_whose_orders_went_to_the_venue_cannot_be_abandoned(status):
    with pytest.raises(Refusal, match=f"is {status}: it has sent its orders"):
        domain.check_abandon("w1", status)


def test_a_window_still_holding_can_be_abandoned_and_again_is_a_no_op():
    domain.check_abandon("w1", "holding")
    domain.check_abandon("w1", "abandoned")
    assert "(hold lost)" in domain.abandoned_reason("hold lost")

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
        domain.check_executions(domain.net_orders([intent("a", "VTI", BUY, "10.00")]), [wrong])


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


# ---------------------------------------------------------------- funding and priority


def sourced(account: str, side: Side, amount: str, source: IntentSource) -> Intent:
    return Intent(intent_id=uuid.uuid4(), account_id=account, symbol="VTI", side=side, amount=amount, source=source)


def test_buys_within_the_cash_are_funded_in_full():
    buy = sourced("a", BUY, "40.00", IntentSource.AUTO_INVEST)
    assert domain.fund([buy], {"a": D("40.00")}).funded == {buy.intent_id: D("40.00")}


def test_a_sells_proceeds_fund_the_same_accounts_buys():
    sell, buy = sourced("a", SELL, "30.00", IntentSource.REBALANCE), sourced("a", BUY, "35.00", IntentSource.REBALANCE)
    funding = domain.fund([sell, buy], {"a": D("5.00")})
    assert funding.funded == {sell.intent_id: D("30.00"), buy.intent_id: D("35.00")}


def test_orders_are_funded_before_automated_trades():
    auto, order = sourced("a", BUY, "30.00", IntentSource.AUTO_INVEST), sourced("a", BUY, "40.00", IntentSource.ORDER)
    funding = domain.fund([auto, order], {"a": D("50.00")})
    assert funding.funded == {order.intent_id: D("40.00"), auto.intent_id: D("10.00")}


def test_liquidations_are_funded_before_orders():
    order = sourced("a", BUY, "40.00", IntentSource.ORDER)
    liquidation = sourced("a", BUY, "40.00", IntentSource.LIQUIDATION)
    funding = domain.fund([order, liquidation], {"a": D("45.00")})
    assert funding.funded == {liquidation.intent_id: D("40.00"), order.intent_id: D("5.00")}


def test_a_short_tier_is_scaled_pro_rata_to_the_cent_rounded_down():
    one, two = sourced("a", BUY, "20.00", IntentSource.AUTO_INVEST), sourced("a", BUY, "10.00", IntentSource.REBALANCE)
    funding = domain.fund([one, two], {"a": D("10.00")})
    assert funding.funded == {one.intent_id: D("6.66"), two.intent_id: D("3.33")}


def test_a_buy_under_one_dollar_after_scaling_is_dropped_with_the_reason():
    big, small = sourced("a", BUY, "90.00", IntentSource.AUTO_INVEST), sourced("a", BUY, "5.00", IntentSource.AUTO_INVEST)
    funding = domain.fund([big, small], {"a": D("10.00")})
    assert funding.funded == {big.intent_id: D("9.47")}
    assert funding.rejected == {small.intent_id: domain.UNDER_MINIMUM}


def test_an_account_without_cash_buys_nothing():
    buy = sourced("a", BUY, "5.00", IntentSource.ORDER)
    assert domain.fund([buy], {"a": D("-3.00")}).rejected == {buy.intent_id: domain.UNDER_MINIMUM}


funding_intents = st.lists(
    st.builds(lambda a, s, m, o: sourced(a, s, m, o), st.sampled_from(["a", "b", "c"]), st.sampled_from([BUY, SELL]),
              st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2), st.sampled_from(list(IntentSource))),
    min_size=1, max_size=30)
cash_of = st.fixed_dictionaries({a: st.decimals(min_value=D("-100"), max_value=D("5000"), places=2)
                                 for a in ["a", "b", "c"]})


@settings(max_examples=300, deadline=None)
@given(funding_intents, cash_of)
def test_no_account_spends_cash_it_does_not_have(intents, cash):
    funding = domain.fund(intents, cash)
    for account in cash:
        mine = [i for i in intents if i.account_id == account]
        sells = sum((i.amount for i in mine if i.side is SELL), D(0))
        buys = sum((funding.funded.get(i.intent_id, D(0)) for i in mine if i.side is BUY), D(0))
        assert buys <= max(cash[account] + sells, D(0)) or buys == 0
        assert all(funding.funded.get(i.intent_id, i.amount) <= i.amount for i in mine)
    assert all(v >= domain.MINIMUM_BUY and v == v.quantize(D("0.01")) for i, v in funding.funded.items()
               if i in {x.intent_id for x in intents if x.side is BUY})
    assert set(funding.funded).isdisjoint(funding.rejected)
    assert set(funding.funded) | set(funding.rejected) == {i.intent_id for i in intents}


@settings(max_examples=200, deadline=None)
@given(funding_intents, cash_of, st.decimals(min_value=D("0.5"), max_value=D("900"), places=2))
def test_funded_allocations_sum_exactly_to_the_fills(intents, cash, price):
    funded = domain.fund(intents, cash).apply(intents)
    if not funded:
        return
    executions = [venue(o, price) for o in domain.net_orders(funded)]
    allocation = domain.allocate(funded, executions)
    ledger_entry(executions, allocation.fills, allocation.residues)  # street + customers + residue sum to zero
    for e in executions:
        fills = [f for f in allocation.fills if f.symbol == e.symbol]
        signed = sum((f.amount if f.side is BUY else -f.amount for f in fills), D(0))
        residue = next(r for r in allocation.residues if r.symbol == e.symbol)
        assert signed - residue.amount == (e.amount if e.side is BUY else -e.amount)


@settings(max_examples=100, deadline=None)
@given(intents_strategy, st.fixed_dictionaries({s: prices for s in SYMBOLS}), st.integers(1, 3))
def test_a_window_booked_in_batches_balances_each_entry_and_clears_to_zero(intents, window_prices, per_batch):
    from services.ledger.domain import clearing_book, fills_batch

    executions, allocation = run_window(intents, window_prices)
    accounts = sorted({f.account_id for f in allocation.fills})
    groups = [accounts[i:i + per_batch] for i in range(0, len(accounts), per_batch)]
    clearing: dict[str, D] = {}
    for n, group in enumerate(groups):
        fills = [f for f in allocation.fills if f.account_id in group]
        postings = fills_batch("w", executions if n == 0 else [], fills, allocation.residues if n == 0 else [])
        for p in postings:  # each entry balances (fills_batch checks), the clearing legs add up
            if p.book == clearing_book("w"):
                clearing[p.asset] = clearing.get(p.asset, D(0)) + p.amount
    assert all(v == 0 for v in clearing.values())


# ---------------------------------------------------------------- schedule

from datetime import UTC, date, datetime  # noqa: E402


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_trading_day_has_a_morning_window_at_930_and_an_afternoon_one_at_1500_new_york_time():
    assert domain.slots_on(date(2026, 11, 25)) == [domain.Slot(utc(2026, 11, 25, 14, 30), domain.MORNING),
                                                   domain.Slot(utc(2026, 11, 25, 20, 0), domain.AFTERNOON)]


def test_summer_time_moves_the_windows_in_utc():
    assert [s.starts_at for s in domain.slots_on(date(2026, 7, 6))] == [utc(2026, 7, 6, 13, 30), utc(2026, 7, 6, 19)]


def test_holidays_and_weekends_have_no_windows():
    assert domain.slots_on(date(2026, 11, 26)) == []  # Thanksgiving
    assert domain.slots_on(date(2026, 11, 28)) == []  # Saturday


def test_on_an_early_close_the_afternoon_window_runs_half_an_hour_before_the_close():
    # The day after Thanksgiving closes at 13:00: the afternoon window runs at 12:30.
    assert domain.slots_on(date(2026, 11, 27))[1] == domain.Slot(utc(2026, 11, 27, 17, 30), domain.AFTERNOON)


def test_the_owed_and_next_slot_skip_the_holiday():
    thanksgiving_noon = utc(2026, 11, 26, 17)
    wednesday_morning = domain.Slot(utc(2026, 11, 25, 14, 30), domain.MORNING)
    assert domain.owed_slots(thanksgiving_noon, utc(2026, 11, 1), wednesday_morning.starts_at) == [
        domain.Slot(utc(2026, 11, 25, 20), domain.AFTERNOON)]
    assert domain.next_slot(thanksgiving_noon) == domain.Slot(utc(2026, 11, 27, 14, 30), domain.MORNING)


def test_every_window_missed_since_the_last_run_is_owed_once_and_none_before_the_schedule_started():
    monday, tuesday = domain.slots_on(date(2026, 11, 23)), domain.slots_on(date(2026, 11, 24))
    tuesday_noon = utc(2026, 11, 24, 17)
    # down from Monday 10:00 until Tuesday noon: Monday's afternoon and Tuesday's morning
    owed = domain.owed_slots(tuesday_noon, utc(2026, 11, 1), monday[0].starts_at)
    assert owed == [monday[1], tuesday[0]]
    assert domain.cutoffs(owed) == {domain.AFTERNOON: monday[1].starts_at, domain.MORNING: tuesday[0].starts_at}
    assert domain.owed_slots(tuesday_noon, utc(2026, 11, 1), tuesday[0].starts_at) == []  # ran: nothing owed
    # a schedule that first ran on Monday at 16:00 owes Tuesday's morning only
    assert domain.owed_slots(tuesday_noon, utc(2026, 11, 23, 21), None) == [tuesday[0]]
    # the window due at this very moment is owed
    assert domain.owed_slots(tuesday[0].starts_at, utc(2026, 11, 1), monday[1].starts_at) == [tuesday[0]]


def test_one_run_takes_the_owed_windows_under_the_latest_ones_id_and_session():
    monday, tuesday = domain.slots_on(date(2026, 11, 23)), domain.slots_on(date(2026, 11, 24))
    assert domain.run_of([]) is None
    assert domain.run_of([tuesday[0]]) == domain.Run(tuesday[0], None)
    # Monday's afternoon missed too: its accounts take what they had pending at 15:00 Monday
    assert domain.run_of([monday[1], tuesday[0]]) == domain.Run(tuesday[0], monday[1].starts_at)
    # both of Monday's missed: the morning's latest is Tuesday's, the afternoon's Monday's
    assert domain.run_of([monday[0], monday[1], tuesday[0]]) == domain.Run(tuesday[0], monday[1].starts_at)
    assert domain.run_of([tuesday[0]]).refusal == "its window (morning, 2026-11-24 09:30 New York) has started"


def test_plus_and_large_accounts_trade_in_both_windows_others_in_their_choice():
    assert domain.trades_in(domain.AFTERNOON, "plus", None, D(0))
    assert domain.trades_in(domain.AFTERNOON, "basic", None, D("25000"))
    assert not domain.trades_in(domain.AFTERNOON, "basic", None, D("24999.99"))
    assert domain.trades_in(domain.MORNING, "basic", None, D(0))  # morning by default
    assert domain.trades_in(domain.AFTERNOON, "basic", domain.AFTERNOON, D(0))
    assert not domain.trades_in(domain.MORNING, "basic", domain.AFTERNOON, D(0))


# ---------------------------------------------------------------- share-quantity intents


def test_share_intents_net_into_the_orders_signed_shares_beside_the_dollar_net():
    orders = domain.net_orders([intent("a", "VTI", BUY, "100.00"), shares_intent("b", "VTI", SELL, "2.5"),
                                shares_intent("c", "VTI", BUY, "1")])
    assert orders == [NetOrder(symbol="VTI", side=BUY, notional=D("100.00"), shares=D("-1.5"))]


def test_a_share_buy_pays_its_shares_value_rounded_up_and_a_share_sell_receives_it_rounded_down():
    buy, sell = shares_intent("a", "VTI", BUY, "0.33333"), shares_intent("b", "VTI", SELL, "0.33333")
    executions, allocation = run_window([buy, sell], {"VTI": D("10.000000")})
    assert executions == [Execution(symbol="VTI", side=BUY, quantity=D("0"), price=D("10"), amount=D("0.00"))]
    by_id = {f.intent_id: f for f in allocation.fills}
    assert (by_id[buy.intent_id].quantity, by_id[buy.intent_id].amount) == (D("0.33333"), D("3.34"))
    assert (by_id[sell.intent_id].quantity, by_id[sell.intent_id].amount) == (D("0.33333"), D("3.33"))
    assert allocation.residues[0].amount == D("0.01")  # the firm keeps the rounding cent


def test_a_mixed_order_executes_on_the_side_of_its_whole_net():
    executions, allocation = run_window([intent("a", "VTI", BUY, "100.00"), shares_intent("b", "VTI", SELL, "3")],
                                        {"VTI": D("50.000000")})
    assert executions[0].side is SELL and executions[0].quantity == D("1")  # 2 bought, 3 sold
    ledger_entry(executions, allocation.fills, allocation.residues)


def test_share_sells_are_limited_to_the_shares_held_in_order():
    first, second = shares_intent("a", "VTI", SELL, "3"), shares_intent("a", "VTI", SELL, "3")
    funding = domain.fund([first, second], {"a": D("0")}, {"VTI": D("10")}, {("a", "VTI"): D("4")})
    assert funding.shares == {first.intent_id: D("3"), second.intent_id: D("1")}
    third = shares_intent("a", "VTI", SELL, "1")
    funding = domain.fund([first, second, third], {"a": D("0")}, {"VTI": D("10")}, {("a", "VTI"): D("4")})
    assert funding.rejected == {third.intent_id: domain.NOT_HELD}


def test_a_share_buy_is_funded_at_its_last_price_plus_the_margin_or_dropped():
    buy = shares_intent("a", "VTI", BUY, "10")
    assert domain.fund([buy], {"a": D("105.00")}, {"VTI": D("10")}).shares == {buy.intent_id: D("10")}
    assert domain.fund([buy], {"a": D("104.99")}, {"VTI": D("10")}).rejected == {buy.intent_id: domain.SHARES_UNFUNDED}
    assert domain.fund([buy], {"a": D("1000")}, {}).rejected == {buy.intent_id: domain.SHARES_UNFUNDED}


def test_a_share_sells_proceeds_fund_buys_at_the_last_price_less_the_margin():
    sell, buy = shares_intent("a", "VTI", SELL, "10"), intent("a", "BND", BUY, "95.00")
    funding = domain.fund([sell, buy], {"a": D("0")}, {"VTI": D("10")}, {("a", "VTI"): D("10")})
    assert funding.funded == {buy.intent_id: D("95.00")}
    more = intent("a", "BND", BUY, "96.00")
    assert domain.fund([sell, more], {"a": D("0")}, {"VTI": D("10")}, {("a", "VTI"): D("10")}).funded == {
        more.intent_id: D("95.00")}


def test_a_dollar_sell_never_delivers_more_shares_than_were_held():
    """The price fell since the sell was sized: the sell delivers the holding and receives
    its value, rounded down, instead of more shares than the account has."""
    sell = intent("a", "VTI", SELL, "100.00")  # sized at $10 for the 10 shares held
    allocation = domain.allocate([sell], [Execution(symbol="VTI", side=SELL, quantity=D("10.10101"),
                                                     price=D("9.9"), amount=D("100.00"))],
                                 {("a", "VTI"): D("10")})
    assert (allocation.fills[0].quantity, allocation.fills[0].amount) == (D("10"), D("99.00"))


held_strategy = st.dictionaries(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(SYMBOLS)),
                                st.integers(0, 10**8).map(lambda q: D(q).scaleb(-5)))
mixed_strategy = st.lists(st.one_of(
    st.builds(intent, st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(SYMBOLS), st.sampled_from(Side), amounts),
    st.builds(shares_intent, st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(SYMBOLS),
              st.sampled_from(Side), st.integers(1, 10**8).map(lambda q: D(q).scaleb(-5)))), min_size=1, max_size=30)


@given(mixed_strategy, st.fixed_dictionaries({s: prices for s in SYMBOLS}), held_strategy,
       st.fixed_dictionaries({a: amounts for a in "abcd"}))
def test_a_window_with_share_intents_balances_and_never_sells_what_is_not_held(intents, window_prices, held, cash):
    funded = domain.fund(intents, cash, window_prices, held).apply(intents)
    if not funded:
        return
    executions = [venue(o, window_prices[o.symbol]) for o in domain.net_orders(funded)]
    allocation = domain.allocate(funded, executions, held)
    ledger_entry(executions, allocation.fills, allocation.residues)
    sold = defaultdict(Decimal)
    for f in allocation.fills:
        if f.side is SELL:
            sold[(f.account_id, f.symbol)] += f.quantity
    for key, quantity in sold.items():
        if key in held:
            assert quantity <= held[key]


# ---------------------------------------------------------------- prices moving until the venue


def test_a_dollar_sell_goes_for_no_more_than_the_shares_held_are_worth_less_the_margin():
    """$100 of VTI sold from 10 shares at $10: the venue may trade down to $9.50, where $100
    would take 10.52632 shares. The sell goes to the venue for the $95 the 10 shares are
    worth there, so the venue never sells shares the account does not hold, and the buy it
    pays for is funded with $95."""
    sell, buy = intent("a", "VTI", SELL, "100.00"), intent("a", "BND", BUY, "100.00")
    last, held = {"VTI": D("10"), "BND": D("20")}, {("a", "VTI"): D("10")}
    funding = domain.fund([sell, buy], {"a": D("0")}, last, held)
    assert funding.funded == {sell.intent_id: D("95.00"), buy.intent_id: D("95.00")}
    funded = funding.apply([sell, buy])
    assert [(o.symbol, o.side, o.notional) for o in domain.net_orders(funded, last)] == [
        ("BND", BUY, D("95.00")), ("VTI", SELL, D("95.00"))]
    executions = [venue(o, o.min_price or last[o.symbol]) for o in domain.net_orders(funded, last)]
    residues = {r.symbol: r for r in domain.allocate(funded, executions, held).residues}
    assert residues["VTI"].quantity == 0  # the street took the 10 shares the account delivered
    # a second sell of what is left finds nothing
    again = intent("a", "VTI", SELL, "10.00")
    assert domain.fund([sell, again], {"a": D("0")}, last, held).rejected == {again.intent_id: domain.NOT_HELD}
    # a sell well within the holding counts in full
    small = intent("a", "VTI", SELL, "50.00")
    assert domain.fund([small, buy], {"a": D("0")}, {"VTI": D("10")}, {("a", "VTI"): D("10")}).funded[
        buy.intent_id] == D("50.00")
    # what the account's share sells of the security leave is what counts
    shares_sold = shares_intent("a", "VTI", SELL, "6")
    funding = domain.fund([shares_sold, small, buy], {"a": D("0")}, {"VTI": D("10")}, {("a", "VTI"): D("10")})
    assert funding.funded[buy.intent_id] == D("57.00") + D("38.00")  # 6 and 4 shares at $9.50


def test_several_dollar_sells_of_a_holding_count_without_the_share_steps_their_rounding_takes():
    """Two $50 sells of 10 shares at $10: at the lowest price the venue may trade ($9.50) the
    first delivers 5.26316 shares (rounded up) for $50, the second the 4.73684 left for
    $44.99. They count for $94.99, not the $95.00 the 10 shares are worth at $9.50."""
    first, second = intent("a", "VTI", SELL, "50.00"), intent("a", "VTI", SELL, "50.00")
    buy = intent("a", "BND", BUY, "100.00")
    last, held = {"VTI": D("10"), "BND": D("20")}, {("a", "VTI"): D("10")}
    funding = domain.fund([first, second, buy], {"a": D("0")}, last, held)
    assert funding.funded[buy.intent_id] == D("94.99")
    funded = funding.apply([first, second, buy])
    executions = [venue(o, o.min_price or last[o.symbol]) for o in domain.net_orders(funded, last)]
    fills = domain.allocate(funded, executions, held).fills
    assert sum((f.amount if f.side is SELL else -f.amount for f in fills), D(0)) == D("0.00")


def test_orders_funded_at_the_last_price_carry_limits_of_the_margin_either_way():
    buy, sell = intent("a", "VTI", BUY, "100.00"), intent("b", "BND", SELL, "20.00")
    shares_buy = shares_intent("c", "QQQ", BUY, "1")
    orders = {o.symbol: o for o in domain.net_orders([buy, sell, shares_buy],
                                                     {"VTI": D("100"), "BND": D("10.000001"), "QQQ": D("3")})}
    assert (orders["VTI"].min_price, orders["VTI"].max_price) == (None, None)  # dollar buys spend their amount
    assert (orders["BND"].min_price, orders["BND"].max_price) == (D("9.500001"), D("10.500001"))  # rounded inward
    assert (orders["QQQ"].min_price, orders["QQQ"].max_price) == (D("2.85"), D("3.15"))


# The venue's price: -10% .. +10% of the last, or exactly at the lower or upper limit.
moves = st.one_of(st.sampled_from([0, 1]), st.integers(9000, 11000).map(lambda f: D(f).scaleb(-4)))


@settings(max_examples=300, deadline=None)
@given(mixed_strategy, st.fixed_dictionaries({s: prices for s in SYMBOLS}), held_strategy,
       st.fixed_dictionaries({a: st.decimals(min_value=D("-100"), max_value=D("5000"), places=2) for a in "abcd"}),
       st.fixed_dictionaries({s: moves for s in SYMBOLS}))
def test_no_account_spends_cash_it_does_not_have_at_any_price_the_venue_fills_at(intents, last, held, cash, move):
    """Dollar and share intents funded at the last prices, filled at whatever price the venue
    gets within the orders' limits: every account ends with no less than zero (or than it
    had, when it started below zero). Orders the venue may not fill carry over."""
    funded = domain.fund(intents, cash, last, held).apply(intents)
    if not funded:
        return
    executions = []
    for order in domain.net_orders(funded, last):
        if isinstance(move[order.symbol], int):
            price = domain.price_limits(last[order.symbol])[move[order.symbol]]
        else:
            price = (last[order.symbol] * move[order.symbol]).quantize(D("0.000001"))
        if order.min_price is None or order.min_price <= price <= order.max_price:
            executions.append(venue(order, price))
    # buys paid for by a sell that did not trade are funded again without it (the window's
    # fund_again); the venue's shares bought for them stay with the firm
    traded = {e.symbol for e in executions}
    kept = [i for i in funded if i.symbol in traded]
    refunded = domain.fund(kept, cash, last, held).apply(kept)
    allocation = domain.allocate(refunded, [e for e in executions if e.symbol in {i.symbol for i in refunded}], held)
    for account in "abcd":
        after = cash[account] + sum((f.amount if f.side is SELL else -f.amount for f in allocation.fills
                                     if f.account_id == account), D(0))
        assert after >= min(cash[account], D(0)), account


def test_a_window_says_what_it_waits_for_until_every_fills_batch_is_booked():
    assert "ledger to hold" in domain.waiting_for("holding", None, 0)
    assert "venue's executions" in domain.waiting_for("executing", None, 0)
    assert domain.waiting_for("allocated", 50, 48) == (
        "the ledger to book its fills: 48 of 50 batches booked (window.fills.batch)")
    assert domain.waiting_for("allocated", 50, 50) is None
    assert domain.waiting_for("allocated", 0, 0) is None  # nothing traded, no batch
    assert domain.waiting_for("allocated", 50, None) is None  # allocated before batches were counted
    assert domain.waiting_for("abandoned", None, 0) is None
