"""Settlement dates and the withdrawal rule (services/ledger/settlement.py)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger import settlement
from services.ledger.settlement import CashState, Decision, business_days_after, decide

D = Decimal


def test_t_plus_one_skips_weekends_and_nyse_holidays():
    assert business_days_after(date(2026, 11, 24), 1) == date(2026, 11, 25)  # Tuesday → Wednesday
    assert business_days_after(date(2026, 11, 25), 1) == date(2026, 11, 27)  # Thanksgiving skipped
    assert business_days_after(date(2026, 11, 27), 1) == date(2026, 11, 30)  # Friday → Monday
    assert business_days_after(date(2026, 11, 28), 1) == date(2026, 11, 30)  # a Saturday trade date
    assert business_days_after(date(2026, 12, 31), 1) == date(2027, 1, 4)  # New Year's Day, then a weekend


def test_a_deposit_clears_after_six_business_days():
    assert business_days_after(date(2026, 11, 18), 6) == date(2026, 11, 27)
    assert business_days_after(date(2026, 11, 18), 0) == date(2026, 11, 18)


def test_the_business_date_is_new_yorks():
    # 02:00 UTC on the 25th is still the 24th in New York.
    assert settlement.settles_on(datetime.fromisoformat("2026-11-25T02:00:00+00:00"), 1) == date(2026, 11, 25)


@settings(deadline=None)  # the first date of a year loads that year's calendar
@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 1)), st.integers(1, 10))
def test_business_days_land_on_a_weekday_strictly_later_and_grow_with_n(day, n):
    later = business_days_after(day, n)
    assert later > day and later.weekday() < 5
    assert business_days_after(day, n + 1) > later


def test_withdrawable_cash_excludes_unsettled_proceeds_held_deposits_and_waiting_withdrawals():
    state = CashState(cash=D("500.00"), unsettled=D("100.00"), on_hold=D("150.00"), held_withdrawals=D("50.00"))
    assert state.withdrawable == D("200.00")
    assert state.settled == D("400.00")
    assert CashState(cash=D("10.00"), on_hold=D("100.00")).withdrawable == D("0.00")


def test_the_withdrawal_rule():
    state = CashState(cash=D("300.00"), unsettled=D("100.00"), on_hold=D("50.00"))
    assert decide(D("150.00"), state, holds_securities=False) == Decision.PAY
    assert decide(D("150.01"), state, holds_securities=False) == Decision.WAIT  # paid when the sale settles
    assert decide(D("250.00"), state, holds_securities=False) == Decision.WAIT
    assert decide(D("250.01"), state, holds_securities=True) == Decision.SELL
    # Only a deposit on hold could cover it and there is nothing to sell: refused now.
    assert decide(D("250.01"), state, holds_securities=False) == Decision.REFUSE
    # No hold at all: the pie decides (it sells, or refuses when the account's value is short).
    assert decide(D("999.00"), CashState(cash=D("300.00")), holds_securities=False) == Decision.SELL


def test_cash_held_for_a_windows_buys_counts_as_spent_for_withdrawals():
    state = CashState(cash=D("150.00"), unsettled=D("20.00"), committed=D("100.00"))
    assert state.withdrawable == D("30.00")
    assert state.free_after_holds == D("50.00")
    assert decide(D("30.00"), state, holds_securities=False) == Decision.PAY
    assert decide(D("50.00"), state, holds_securities=False) == Decision.WAIT  # the sale's $20 settles first
    # More would take the buys' cash: held while the pie sells for it, never paid from it.
    assert decide(D("50.01"), state, holds_securities=False) == Decision.SELL
    assert CashState(cash=D("80.00"), committed=D("100.00")).withdrawable == D("0.00")


@given(st.decimals(D("0.01"), D("10000"), places=2), st.decimals(D("0"), D("10000"), places=2),
       st.decimals(D("0"), D("10000"), places=2), st.decimals(D("0"), D("10000"), places=2), st.booleans())
def test_a_withdrawal_is_paid_at_once_exactly_when_it_fits_the_withdrawable_cash(amount, cash, unsettled, hold, held):
    state = CashState(cash=cash, unsettled=min(unsettled, cash), on_hold=hold)
    assert (decide(amount, state, held) == Decision.PAY) == (amount <= state.withdrawable)
    assert settlement.payable(amount, state) == (amount <= state.withdrawable)
