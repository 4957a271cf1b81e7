"""Tax lots, realised gains, wash sales, regulatory and platform fees, interest, dividends."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from services.ledger import lots
from services.ledger.lots import Lot, Sale

SOLD = date(2026, 6, 15)
LONG_AGO = date(2024, 1, 10)  # long-term at SOLD
RECENT = date(2026, 3, 1)  # short-term at SOLD
RATES = lots.RegulatoryRates(D("27.80"), D("0.000166"), D("8.30"))


def lot(lot_id: int, acquired: date, quantity: str, cost: str) -> Lot:
    return Lot(lot_id, acquired, D(quantity), D(cost))


def order(lots_: list[Lot], price: str = "100") -> list[int]:
    return [x.lot_id for x in lots.select_lots(lots_, D(price), SOLD)]


def test_selection_is_short_losses_long_losses_zero_then_long_gains_then_short_gains():
    lots_ = [
        lot(1, RECENT, "1", "80.00"),  # short gain 20
        lot(2, RECENT, "1", "95.00"),  # short gain 5
        lot(3, LONG_AGO, "1", "70.00"),  # long gain 30
        lot(4, LONG_AGO, "1", "90.00"),  # long gain 10
        lot(5, LONG_AGO, "1", "100.00"),  # long zero
        lot(6, RECENT, "1", "100.00"),  # short zero
        lot(7, LONG_AGO, "1", "105.00"),  # long loss 5
        lot(8, LONG_AGO, "1", "130.00"),  # long loss 30
        lot(9, RECENT, "1", "110.00"),  # short loss 10
        lot(10, RECENT, "1", "120.00"),  # short loss 20
    ]
    assert order(lots_) == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_losses_go_before_gains_whatever_the_age():
    assert order([lot(1, LONG_AGO, "1", "50.00"), lot(2, RECENT, "1", "101.00")]) == [2, 1]


def test_a_long_term_gain_goes_before_a_smaller_short_term_gain():
    assert order([lot(1, RECENT, "1", "99.00"), lot(2, LONG_AGO, "1", "60.00")]) == [2, 1]


def test_gain_per_share_not_per_lot_decides():
    # Lot 1: 10 shares at $99 (gain $1/share, $10 total); lot 2: 1 share at $95 ($5/share).
    assert order([lot(1, RECENT, "10", "990.00"), lot(2, RECENT, "1", "95.00")]) == [1, 2]


def test_long_term_means_more_than_one_year():
    assert not lots.is_long_term(date(2025, 6, 15), date(2026, 6, 15))
    assert lots.is_long_term(date(2025, 6, 15), date(2026, 6, 16))
    assert not lots.is_long_term(date(2024, 2, 29), date(2025, 2, 28))
    assert lots.is_long_term(date(2024, 2, 29), date(2025, 3, 1))


def test_a_sale_closes_lots_in_order_with_cost_and_proceeds_to_the_cent():
    lots_ = [lot(1, RECENT, "3", "300.00"), lot(2, RECENT, "2", "260.00")]  # $100 and $130 a share
    closures, changed = lots.close_lots(lots_, D("3"), D("360.00"), D("120"), SOLD)
    # lot 2 is a loss at $120 (cost $130): closed first, in full; then 1 of lot 1's 3 shares
    assert [(c.lot_id, c.quantity, c.cost, c.proceeds, c.gain, c.term) for c in closures] == [
        (2, D("2"), D("260.00"), D("240.00"), D("-20.00"), "short"),
        (1, D("1"), D("100.00"), D("120.00"), D("20.00"), "short"),
    ]
    assert {c.lot_id: (c.quantity, c.cost) for c in changed} == {2: (D("0"), D("0.00")), 1: (D("2"), D("200.00"))}


def test_shares_without_a_lot_are_closed_with_unknown_basis():
    closures, _ = lots.close_lots([lot(1, RECENT, "1", "10.00")], D("1.5"), D("15.00"), D("10"), SOLD)
    assert [(c.lot_id, c.quantity, c.cost, c.basis_known) for c in closures] == [
        (1, D("1"), D("10.00"), True), (None, D("0.5"), D("0.00"), False)]
    assert sum(c.proceeds for c in closures) == D("15.00")


@given(st.lists(st.tuples(st.integers(1, 10**7), st.integers(1, 10**7), st.booleans()), min_size=1, max_size=8),
       st.integers(1, 10**6), st.data())
def test_closing_uses_each_lots_cost_once_and_shares_the_proceeds_exactly(specs, price_cents, data):
    lots_ = [Lot(i, LONG_AGO if old else RECENT, D(q) / 1000, D(c) / 100) for i, (q, c, old) in enumerate(specs)]
    held = sum(x.quantity for x in lots_)
    quantity = D(data.draw(st.integers(1, int(held * 1000)))) / 1000
    proceeds = (quantity * D(price_cents) / 100).quantize(D("0.01"))
    closures, changed = lots.close_lots(lots_, quantity, proceeds, D(price_cents) / 100, SOLD)
    assert sum(c.quantity for c in closures) == quantity
    assert sum(c.proceeds for c in closures) == proceeds
    assert all(c.basis_known for c in closures)
    by_id = {x.lot_id: x for x in lots_}
    for after in changed:
        before = by_id[after.lot_id]
        closed = [c for c in closures if c.lot_id == after.lot_id]
        assert before.quantity == after.quantity + sum(c.quantity for c in closed)
        assert before.cost == after.cost + sum(c.cost for c in closed)
        assert after.cost >= 0 and (after.quantity > 0 or after.cost == 0)


def test_a_batch_closes_each_sale_against_what_earlier_sales_left():
    open_lots = {("a", "VTI"): [lot(1, RECENT, "1", "100.00"), lot(2, RECENT, "1", "50.00")]}
    sales = [Sale("w:1", "a", "VTI", D("1"), D("80.00"), D("80")), Sale("w:2", "a", "VTI", D("1"), D("80.00"), D("80"))]
    closed, changed = lots.close_sales(open_lots, sales, SOLD)
    assert [(s.sale_id, c.lot_id, c.gain) for s, c in closed] == [("w:1", 1, D("-20.00")), ("w:2", 2, D("30.00"))]
    assert set(changed) == {1, 2}


def test_wash_sale_is_a_loss_with_a_purchase_within_thirty_days_either_side():
    assert lots.is_wash_sale(D("-1.00"), SOLD, [date(2026, 5, 16)])  # 30 days before
    assert lots.is_wash_sale(D("-1.00"), SOLD, [date(2026, 7, 15)])  # 30 days after
    assert not lots.is_wash_sale(D("-1.00"), SOLD, [date(2026, 5, 15), date(2026, 7, 16)])  # 31 days
    assert not lots.is_wash_sale(D("1.00"), SOLD, [SOLD])  # a gain is never a wash sale


# ---------------------------------------------------------------- regulatory fees


def test_regulatory_fee_examples():
    assert lots.sec_fee(D("1000000.00"), RATES) == D("27.80")
    assert lots.sec_fee(D("100.00"), RATES) == D("0.01")  # 0.00278 rounds up
    assert lots.sec_fee(D("0.00"), RATES) == D("0.00")
    assert lots.finra_taf(D("100"), RATES) == D("0.02")  # 0.0166 rounds up
    assert lots.finra_taf(D("50000"), RATES) == D("8.30")  # 8.30 exactly
    assert lots.finra_taf(D("1000000"), RATES) == D("8.30")  # capped


@given(st.integers(0, 10**12))
def test_sec_fee_is_the_rate_rounded_up_to_the_cent(principal_cents):
    principal = D(principal_cents) / 100
    fee = lots.sec_fee(principal, RATES)
    exact = principal * D("27.80") / 1000000
    assert fee == fee.quantize(D("0.01")) and exact <= fee < exact + D("0.01")


@given(st.integers(0, 10**11))
def test_finra_taf_is_per_share_rounded_up_and_capped(quantity_units):
    quantity = D(quantity_units) / 100000
    fee = lots.finra_taf(quantity, RATES)
    exact = quantity * D("0.000166")
    assert fee == fee.quantize(D("0.01")) and fee <= D("8.30")
    assert fee == D("8.30") if exact > D("8.30") else exact <= fee < exact + D("0.01")


def test_a_trade_is_one_accounts_sales_of_one_security_in_a_window():
    sales = [Sale("w:1", "a", "VTI", D("30000"), D("500000.00"), D("16.67")),
             Sale("w:2", "a", "VTI", D("30000"), D("500000.00"), D("16.67")),
             Sale("w:3", "a", "BND", D("100"), D("7000.00"), D("70")),
             Sale("w:4", "b", "VTI", D("1"), D("1.00"), D("1"))]
    fees = lots.regulatory_fees(sales, RATES)
    # a: VTI $1,000,000 / 60,000 shares -> $27.80 + capped $8.30; BND $7,000 / 100 -> $0.20 + $0.02
    assert fees == {"a": (D("28.00"), D("8.32")), "b": (D("0.01"), D("0.01"))}


def test_sales_of_one_security_in_two_windows_of_a_day_are_two_trades():
    # 30,000 shares at $1 in each window: per trade SEC $0.84 (0.834 up) and TAF $4.98, each
    # rounded and capped on its own; merged they would be $1.67 (1.668 up) and a capped $8.30.
    sales = [Sale("w1", "a", "X", D("30000"), D("30000.00"), D("1")),
             Sale("w2:i", "a", "X", D("30000"), D("30000.00"), D("1"))]
    assert lots.regulatory_fees(sales, RATES) == {"a": (D("1.68"), D("9.96"))}


# ---------------------------------------------------------------- platform fee, interest, dividends


def test_platform_fee_is_waived_when_one_day_reached_the_threshold():
    fee, waiver = D("3.00"), D("10000.00")
    assert lots.platform_fee_due([D("9999.99"), D("50")], fee, waiver) == D("3.00")
    assert lots.platform_fee_due([D("50"), D("10000.00"), D("20")], fee, waiver) == D("0.00")
    assert lots.platform_fee_due([D("0"), D("0")], fee, waiver) == D("0.00")  # an empty account
    assert lots.platform_fee_due([], fee, waiver) == D("0.00")


def test_interest_accrues_daily_and_is_paid_rounded_down():
    day = lots.daily_interest(D("10000.00"), D("0.04"), date(2026, 11, 3))
    assert day == D("1.0958904110")
    assert lots.monthly_interest(day * 30) == D("32.87")
    assert lots.daily_interest(D("-5.00"), D("0.04"), date(2026, 11, 3)) == 0
    assert lots.daily_interest(D("366.00"), D("0.05"), date(2028, 1, 1)) == D("0.05")  # leap year: /366


def test_the_schedule_owes_every_finished_day_since_it_started_that_has_not_run():
    started = date(2026, 11, 28)
    assert lots.days_owed(started, date(2026, 11, 28), []) == []  # today is not finished
    assert lots.days_owed(started, date(2026, 12, 2), [date(2026, 11, 29)]) == [
        date(2026, 11, 28), date(2026, 11, 30), date(2026, 12, 1)]
    assert lots.days_owed(started, date(2026, 11, 27), []) == []  # a clock set back owes nothing


def test_month_end():
    assert lots.month_end(date(2026, 11, 30)) and lots.month_end(date(2028, 2, 29))
    assert not lots.month_end(date(2026, 11, 29)) and not lots.month_end(date(2028, 2, 28))


@given(st.dictionaries(st.text("ab", min_size=1, max_size=4), st.integers(0, 10**9), max_size=20),
       st.integers(1, 10**8))
def test_dividend_credits_round_down_and_the_residue_balances(holdings_units, per_share_units):
    holdings = {a: D(q) / 100000 for a, q in holdings_units.items()}
    per_share = D(per_share_units) / 1000000
    credits, gross, residue = lots.dividend_credits(holdings, per_share)
    for account, credit in credits.items():
        exact = holdings[account] * per_share
        assert credit == credit.quantize(D("0.01")) and credit <= exact < credit + D("0.01")
    assert residue >= 0 and gross == sum(credits.values(), D(0)) + residue
    assert residue < D("0.01") * (len(holdings) + 1)
