"""Margin rules as oracles: the textbook call, calls along a falling price path, amounts due
and liquidation sizes to the cent, borrowing power, eligibility, interest and deadlines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger import loans
from services.margin import domain
from services.margin.domain import Holding, Rules

D = Decimal
HOUSE = Rules()
TEXTBOOK = Rules(maintenance_rate=D("0.25"))


def one(symbol: str, value: str, **kw) -> Holding:
    return Holding(symbol, D(value), D("1"), **kw)


# ---------------------------------------------------------------- the textbook case


def textbook(market_value: Decimal) -> domain.Figures:
    """$10,000 bought with $5,000 of loan and $5,000 of equity; no cash left."""
    return domain.figures([Holding("VTI", D("100"), market_value / 100)], D("0"), D("5000"), TEXTBOOK)


def test_textbook_call_below_6666_67_of_market_value():
    assert domain.amount_due(textbook(D("10000"))) is None
    at = textbook(D("6666.67"))  # equity 1666.67 >= requirement 1666.6675: no call
    assert at.equity >= at.requirement and domain.amount_due(at) is None
    under = textbook(D("6666.66"))  # equity 1666.66 < requirement 1666.665: 0.005 due, to the cent up
    assert under.equity < under.requirement and domain.amount_due(under) == D("0.01")
    below = textbook(D("6000"))  # equity 1000, requirement 1500
    assert domain.amount_due(below) == D("500.00")


def test_call_issued_exactly_at_the_first_price_under_the_requirement():
    """Along a falling path (one cent at a time) the first price with a call is the first
    where equity < requirement: market value x (1 - 0.25) < 5,000."""
    prices = [D("70.00") - D("0.01") * i for i in range(500)]
    first = next(p for p in prices if domain.amount_due(textbook(p * 100)) is not None)
    assert first * 100 * (1 - D("0.25")) < 5000 <= (first + D("0.01")) * 100 * (1 - D("0.25"))
    assert first == D("66.66")


def test_amount_due_is_requirement_minus_equity_to_the_cent():
    f = domain.figures([Holding("VTI", D("10"), D("100")), Holding("BND", D("20"), D("50"))], D("-100"),
                       D("1500"), HOUSE)
    # market value 2000, requirement 600, equity 2000 - 100 - 1500 = 400: due 200.00
    assert (f.market_value, f.requirement, f.equity) == (D("2000"), D("600.0"), D("400"))
    assert domain.amount_due(f) == D("200.00")
    # a deposit of exactly the amount due meets the call
    assert domain.amount_due(domain.Figures(f.market_value, f.cash + D("200.00"), f.loan, f.requirement,
                                            f.capacity)) is None


def test_maintenance_overrides_and_the_regulatory_floor():
    holdings = [one("TQQQ", "1000", maintenance=D("0.75")), one("VTI", "1000", maintenance=D("0.10")),
                one("BND", "1000")]
    # 750 + 250 (0.10 raised to the 25% floor) + 300 (house)
    assert domain.requirement(holdings, HOUSE) == D("1300")


def test_liquidation_amount_restores_the_requirement():
    f = domain.figures([Holding("VTI", D("100"), D("60"))], D("0"), D("5000"), TEXTBOOK)
    # mv 6000, req 1500, equity 1000: shortfall 500 / 0.25 = 2000, plus 5%: 2100.00
    assert domain.liquidation_amount(f, TEXTBOOK) == D("2100.00")
    no_buffer = Rules(maintenance_rate=D("0.25"), liquidation_buffer=D("0"))
    sell = domain.liquidation_amount(f, no_buffer)
    assert sell == D("2000.00")
    after = domain.Figures(f.market_value - sell, f.cash, f.loan - sell, (f.market_value - sell) * D("0.25"), D("0"))
    assert after.equity == after.requirement  # exactly back at the requirement


def test_liquidation_never_sells_more_than_the_holdings():
    f = domain.figures([Holding("VTI", D("10"), D("10"))], D("0"), D("5000"), HOUSE)
    assert domain.liquidation_amount(f, HOUSE) == D("100.00")


# ---------------------------------------------------------------- borrowing


def test_borrowing_power_is_forty_percent_less_the_loan_and_pending():
    holdings = [one("VTI", "3000"), one("BND", "2000")]
    f = domain.figures(holdings, D("0"), D("500"), HOUSE)
    assert domain.borrowing_power(f) == D("1500.00")
    assert domain.borrowing_power(f, D("1500")) == D("0.00")
    assert domain.borrowing_power(f, D("9999")) == D("0.00")


def test_leveraged_security_adds_less_and_at_100_percent_nothing():
    f = domain.figures([one("TQQQ", "2000", initial=D("0.75")), one("VTI", "2000"), one("GLD", "2000",
                                                                                          initial=D("1"))],
                       D("0"), D("0"), HOUSE)
    assert domain.borrowing_power(f) == D("500.00") + D("800.00")


@pytest.mark.parametrize("kind", ["traditional_ira", "roth_ira", "sep_ira", "custodial"])
def test_retirement_and_custodial_accounts_never_borrow(kind):
    reason = domain.borrow_refusal(kind, [one("VTI", "50000"), one("BND", "50000")], D("0"), D("0"), D("0"),
                                   D("1"), HOUSE)
    assert reason is not None and "individual, joint, trust" in reason


def test_borrow_refusals_with_reasons():
    diversified = [one("VTI", "1500"), one("BND", "1500")]
    assert "at least $2000.00 invested" in domain.borrow_refusal("individual", [one("VTI", "1999.99")], D("0"),
                                                                  D("0"), D("0"), D("1"), HOUSE)
    assert "(at most 60%)" in domain.borrow_refusal("joint", [one("VTI", "2500"), one("BND", "500")], D("0"),
                                                      D("0"), D("0"), D("1"), HOUSE)
    assert "exceeds the borrowing power of $1200.00" in domain.borrow_refusal(
        "trust", diversified, D("0"), D("0"), D("0"), D("1200.01"), HOUSE)
    assert domain.borrow_refusal("trust", diversified, D("0"), D("0"), D("0"), D("1200.00"), HOUSE) is None


# ---------------------------------------------------------------- properties over random portfolios

money = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
price = st.decimals(min_value=D("0.01"), max_value=D("5000"), places=6)
quantity = st.decimals(min_value=D("0.00001"), max_value=D("10000"), places=5)
rate = st.one_of(st.none(), st.decimals(min_value=D("0"), max_value=D("1"), places=4))
holding = st.builds(Holding, st.sampled_from(["VTI", "BND", "VXUS", "TQQQ", "GLD"]), quantity, price, rate, rate)


@settings(max_examples=300)
@given(st.lists(holding, min_size=1, max_size=6), st.decimals(min_value=D("-5000"), max_value=D("50000"), places=2),
       money)
def test_call_exactly_when_equity_under_requirement(holdings, cash, loan):
    f = domain.figures(holdings, cash, loan, HOUSE)
    due = domain.amount_due(f)
    assert (due is not None) == (f.equity < f.requirement)
    if due is not None:
        assert due - D("0.01") < f.requirement - f.equity <= due  # to the cent, rounded up
        assert f.requirement >= D("0.25") * f.market_value  # never below the regulatory minimum


@settings(max_examples=300)
@given(st.lists(holding, min_size=1, max_size=6), money)
def test_liquidation_with_its_proceeds_repaying_the_loan_meets_the_call(holdings, loan):
    f = domain.figures(holdings, D("0"), loan, HOUSE)
    sell = domain.liquidation_amount(f, HOUSE)
    if f.equity >= f.requirement:
        assert sell == 0
        return
    assert 0 < sell <= max(f.market_value, D("0.01"))
    # selling pro rata across the holdings (the account's effective rate) and repaying the loan
    rate = f.requirement / f.market_value
    after_mv = f.market_value - sell
    after = domain.Figures(after_mv, D("0"), f.loan - sell, after_mv * rate, D("0"))
    if sell < domain.cents_down(f.market_value):  # not capped by the holdings
        assert after.equity >= after.requirement


@given(st.lists(holding, min_size=1, max_size=6), money, money)
def test_borrowing_power_never_negative_and_never_above_capacity(holdings, loan, pending):
    f = domain.figures(holdings, D("0"), loan, HOUSE)
    power = domain.borrowing_power(f, pending)
    assert D("0") <= power <= max(f.capacity, D("0"))
    assert power == power.quantize(D("0.01"))


# ---------------------------------------------------------------- interest and deadlines


def test_daily_interest_and_the_monthly_charge():
    assert domain.annual_rate("plus", HOUSE) == D("0.0725")
    assert domain.annual_rate("basic", HOUSE) == D("0.0875")
    day = domain.daily_interest(D("10000"), D("0.0875"))
    month = day * 30
    assert domain.charge_of(month) == D("71.91")  # 10000 x 0.0875 x 30 / 365 = 71.917..., rounded down
    assert domain.month_end(date(2026, 11, 30)) and not domain.month_end(date(2026, 11, 29))
    assert domain.month_end(date(2028, 2, 29))


def test_deadline_is_the_close_of_the_third_session_skipping_holidays():
    # Wednesday 25 Nov 2026: Thursday is Thanksgiving; Friday, Monday, Tuesday are sessions.
    assert domain.call_deadline(datetime(2026, 11, 25, 15, tzinfo=UTC), 3) == datetime(2026, 12, 1, 21, tzinfo=UTC)
    # issued on a Saturday: Monday, Tuesday, Wednesday
    assert domain.call_deadline(datetime(2026, 11, 28, 15, tzinfo=UTC), 3) == datetime(2026, 12, 2, 21, tzinfo=UTC)


# ---------------------------------------------------------------- the ledger's loan rules


def test_loan_entries_balance():
    for postings in (loans.draw_postings("a", D("100.00")), loans.repay_postings("a", D("5.00")),
                     loans.interest_postings("a", D("0.01"))):
        assert sum(p.amount for p in postings) == 0


def test_repayment_rules():
    assert loans.repayment(D("50"), cash=D("80"), owed=D("100"), up_to=False) == D("50")
    with pytest.raises(Exception, match="exceeds the loan"):
        loans.repayment(D("150"), cash=D("500"), owed=D("100"), up_to=False)
    with pytest.raises(Exception, match="insufficient cash"):
        loans.repayment(D("90"), cash=D("80"), owed=D("100"), up_to=False)
    assert loans.repayment(D("150"), cash=D("80"), owed=D("100"), up_to=True) == D("80")
    assert loans.repayment(D("150"), cash=D("-3"), owed=D("100"), up_to=True) == D("0.00")


def test_withdrawal_may_not_push_the_loan_above_forty_percent_of_the_value():
    # holdings 8000, cash 2000, loan 3000: the value may fall to 7500, so 2500 can leave
    assert loans.withdrawal_refusal(D("2500"), D("2000"), D("8000"), D("3000"), D("0.40")) is None
    reason = loans.withdrawal_refusal(D("2500.01"), D("2000"), D("8000"), D("3000"), D("0.40"))
    assert reason is not None and "at most 2500.00 can be withdrawn" in reason
    assert loans.withdrawal_refusal(D("9000"), D("9000"), D("0"), D("0"), D("0.40")) is None


def test_withdrawals_already_held_count_as_gone_for_the_loan_check():
    # holdings 1000, cash 300, loan 300: alone, 500 leaves a value of 800 (the loan 37.5% of it)
    assert loans.withdrawal_refusal(D("500"), D("300"), D("1000"), D("300"), D("0.40")) is None
    # with 500 already held, another 500 would leave 300: the value may fall to 750, so 50 more
    reason = loans.withdrawal_refusal(D("500"), D("300"), D("1000"), D("300"), D("0.40"), held=D("500"))
    assert reason is not None and "at most 50.00 can be withdrawn" in reason
    assert loans.withdrawal_refusal(D("50"), D("300"), D("1000"), D("300"), D("0.40"), held=D("500")) is None


def test_a_repayment_spends_only_the_cash_not_held_for_withdrawals_or_windows():
    with pytest.raises(Exception, match="requested 500, cash 500 of which 300 is held for withdrawals and trade"):
        loans.repayment(D("500"), cash=D("500"), owed=D("800"), up_to=False, held=D("300"))
    assert loans.repayment(D("200"), cash=D("500"), owed=D("800"), up_to=False, held=D("300")) == D("200")
    assert loans.repayment(D("500"), cash=D("500"), owed=D("800"), up_to=True, held=D("300")) == D("200")
    assert loans.repayment(D("500"), cash=D("500"), owed=D("800"), up_to=True, held=D("600")) == D("0.00")


# ---------------------------------------------------------------- what the holder is told


def test_margin_notifications():
    import uuid

    from services.notification import margin as words
    from shared.contracts import LoanChanged, MarginCallIssued, MarginCallLiquidated

    now = datetime(2026, 11, 25, 15, tzinfo=UTC)
    drawn = LoanChanged(account_id="a", loan=D("1000.00"), delta=D("1000.00"), cash=D("1000.00"), cause="loan",
                        cause_id="x", version=3, booked_at=now)
    assert words.loan_changed(drawn).message == ("Margin loan of $1,000.00 added to your cash; you now owe "
                                                 "$1,000.00.")
    repaid = LoanChanged(account_id="a", loan=D("0.00"), delta=D("-1000.00"), cash=D("0.00"), cause="repayment",
                         cause_id="y", version=4, booked_at=now)
    note = words.loan_changed(repaid)
    assert note.kind == "margin_loan_repaid" and "fully repaid" in note.message
    issued = MarginCallIssued(account_id="a", call_id=uuid.uuid4(), amount_due=D("0.64"), market_value=D("2284.80"),
                              equity=D("684.80"), requirement=D("685.44"), loan=D("1600.00"),
                              deadline=domain.call_deadline(now, 3), issued_at=now)
    assert words.call_issued(issued).message == (
        "Margin call: your equity of $684.80 is below the maintenance requirement of $685.44. Deposit $0.64 (or "
        "repay the loan) by Tue 1 Dec 2026 16:00 New York time, or holdings will be sold to repay the loan.")
    liquidated = MarginCallLiquidated(account_id="a", call_id=issued.call_id, amount=D("112.00"),
                                      shortfall=D("32.00"), reason="floor", liquidated_at=now)
    assert "because your equity fell below the minimum" in words.call_liquidated(liquidated).message
